"""`python -m steam_dinov2 STAGE ...`: a thin shell over the package's functions."""

from __future__ import annotations

import argparse
import errno
import logging
import sys

from .audit.audit import (
    NEAR_DUP_THRESHOLD,
    STEAM_ONLY_TYPES,
    AuditRun,
    audit_banners,
    load_exclusions,
)
from .audit.cleanvision import ISSUE_TYPES
from .browse.settings import is_trusted_model
from .collection.folder import import_folder
from .collection.snapshot import import_snapshot
from .core import files, layout
from .core.codec import DEFAULT_SIZE, SIZES
from .core.manifest import now_utc
from .core.net import DEFAULT_DEADLINE, SteamHttp
from .embedding.cache import folder_ref, read_cache_meta
from .embedding.embed import embed_folder, load_embeddings
from .embedding.models import available_models
from .embedding.pooling import POOLINGS
from .embedding.precision import CHOICES as PRECISION_CHOICES
from .embedding.preprocess import PRESETS
from .embedding.setting import Setting, as_setting
from .evaluation.evaluate import COPY_SAMPLE, TRUTHS, evaluate_settings
from .evaluation.scoreboard import describe_best, rank_settings, tabulate_evaluation
from .lookalikes import LOOKALIKE_K, find_lookalikes, new_games
from .search import describe_exclusions, match_all
from .steam.download import DEFAULT_WORKERS, download_banners
from .steam.metadata import fetch_metadata
from .views.compare import plot_games
from .views.explain import plot_match_explained
from .views.site import export_site

INTERRUPTED = 130  # the shell's code for a process stopped by SIGINT
_FULL = "the disk is full: free some space (or use a --data on another disk) and run again; "
_FULL += "what was finished is kept"
# What to do about the errors a user can fix, by errno: said on the one line of the error.
ERRNO_ADVICE = {
    errno.ENOSPC: _FULL,
    errno.EDQUOT: _FULL,
    errno.EBUSY: "it is busy (open in another program, or a mount point): close that program "
    "or choose another path",
    errno.ENOTDIR: "a part of this path is a file, not a folder: choose a folder",
    errno.EEXIST: "a file of this name is in the way of a folder: move it or choose another path",
    errno.EISDIR: "it is a folder where a file belongs: choose another path",
    errno.EACCES: "permission denied: choose a folder you may write to",
    errno.EPERM: "not permitted: choose a folder you may write to",
    errno.EROFS: "the filesystem is read-only: choose a folder you may write to",
}


def positive_int(text: str, least: int = 1) -> int:
    """argparse type of a count (--batch-size, --limit, ...): an int >= ``least``; argparse
    exits 2 naming the flag otherwise, before any stage runs."""
    value = int(text)  # not a number: argparse says "invalid positive_int value"
    if value < least:
        raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
    return value


def count(text: str) -> int:  # 0 allowed: --workers 0 decodes in-process, --copies 0 skips
    return positive_int(text, 0)


def _add_model_options(p: argparse.ArgumentParser) -> None:

    p.add_argument(
        "--model",
        default="dinov2_vits14",
        help="registry name (see `models`), timm name or hub:REPO:ENTRY",
    )
    p.add_argument(
        "--preset", default="crop256", choices=list(PRESETS), help="preprocessing preset"
    )
    p.add_argument("--pooling", default="cls", choices=list(POOLINGS), help="pooling strategy")
    p.add_argument("--no-pretrained", action="store_true", help="random weights (offline tests)")
    p.add_argument("--weights", help="local weights file (.pth or .safetensors), for offline use")
    p.add_argument(
        "--precision",
        default="auto",
        choices=PRECISION_CHOICES,
        help="auto: bf16 on a CPU with AMX or AVX512-BF16 and on Ampere+ GPUs, fp16 on older "
        "GPUs, else fp32 (the log says why); a cache of another precision is used only when asked",
    )


def _add_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="data folder")


def _add_images(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", help="image folder, top level only (default: DATA/banners)")


def _hidden_images(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", help=argparse.SUPPRESS)


# --- The stages behind ``python -m steam_dinov2 STAGE``: each stage's options (``_add_*_options``)
# sit just above the ``cmd_*`` that reads them; a ``cmd_*`` takes the parsed options and returns the
# exit code. The options above this line are shared by several stages.


def _setting(args):
    """The ``Setting`` the model options name (``--model --preset --pooling --no-pretrained
    --weights --precision``, and ``--device`` for an "auto" precision)."""

    return Setting.create(
        args.model,
        args.preset,
        args.pooling,
        pretrained=not args.no_pretrained,
        weights=args.weights,
        precision=args.precision,
        device=getattr(args, "device", "auto"),
    )


def cmd_models(args) -> int:
    print(f"{'name':<20} {'family':<7} {'dim':>5} {'patch':>5}  timm architecture")

    for m in available_models():
        print(f"{m['name']:<20} {m['family']:<7} {m['dim']:>5} {m['patch_size']:>5}  {m['arch']}")
    return 0


def _collection(args):
    """The image folder a stage reads (``--images``, else DATA/banners); ValueError naming the
    stages that make a collection when DATA has none."""
    if getattr(args, "images", None):
        return args.images
    folder = layout.banners_dir(args.data)
    if not folder.is_dir():
        raise ValueError(
            f"no collection in {args.data} ({folder} not found): run `download`, "
            "`import-snapshot` or `import-folder` first"
        )
    return folder


def _add_embed_options(p: argparse.ArgumentParser) -> None:
    _add_model_options(p)
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="images per batch (default: by device, 32 on a CPU, 128-256 on a GPU)",
    )
    p.add_argument(
        "--workers", type=count, default=None, help="decoding processes (default: by device)"
    )
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, ...")


def _embed(args):

    emb = embed_folder(
        _collection(args),
        args.data,
        setting=_setting(args),
        batch_size=args.batch_size,
        num_workers=args.workers,
        device=args.device,
    )
    print(
        f"{emb.embedded} embedded, {emb.reused} reused "
        f"({emb.vectors.shape[1] if len(emb.ids) else 0} dims), {len(emb.errors)} skipped"
        + (f", {emb.dropped} dropped (no longer in the collection)" if emb.dropped else "")
        + f" -> {layout.embeddings_dir(args.data, emb.setting)}"
    )
    for i, reason in list(emb.errors.items())[:10]:
        print(f"  skipped {i}: {reason}")
    return emb


def cmd_embed(args) -> int:
    _embed(args)
    return 0


def _exclusions(args) -> dict:

    return {} if args.include_excluded else load_exclusions(args.data)


def _add_match_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--k", type=int, default=10, help="neighbours per image (at least 1)")
    p.add_argument(
        "--include-excluded", action="store_true", help="ignore the audit's exclusion list"
    )


def _match(args, emb=None, exclude=None):

    exclude = _exclusions(args) if exclude is None else exclude
    emb = emb or load_embeddings(args.data, _setting(args))
    table = match_all(emb, k=args.k, exclude=exclude, data=args.data)
    if exclude:
        print(f"audit exclusions applied: {describe_exclusions(exclude)}; never neighbours")
    print(
        f"{len(table)} matches for {len(emb.ids)} images -> {layout.neighbors_path(args.data, emb.setting)}"
    )
    return table


def cmd_match(args) -> int:
    _match(args)
    return 0


def _add_download_options(p: argparse.ArgumentParser) -> None:

    p.add_argument(
        "--source",
        default="steamspy",  # as in the notebooks: no key needed
        help="steamspy (default), store (needs STEAM_API_KEY) or file:PATH",
    )
    p.add_argument("--limit", type=positive_int, help="at most N apps from the source")
    p.add_argument("--size", default=DEFAULT_SIZE, choices=list(SIZES), help="saved banner size")
    # One meaning per flag: --workers is decoding processes (embed, audit, run) everywhere.
    p.add_argument(
        "--download-workers", type=positive_int, default=DEFAULT_WORKERS, help="download threads"
    )
    p.add_argument(
        "--deadline",
        type=float,
        default=DEFAULT_DEADLINE,
        help="seconds a banner may take in all, retries included (a stalled CDN connection)",
    )


def _download(args):

    if not args.deadline > 0:
        raise ValueError(f"--deadline must be > 0 seconds, got {args.deadline}")
    report = download_banners(
        args.data,
        source=args.source,
        limit=args.limit,
        size=args.size,
        workers=args.download_workers,
        http=SteamHttp(deadline=args.deadline),
    )
    print(f"{report}\n-> {layout.banners_dir(args.data)}")
    return report


def cmd_download(args) -> int:
    since = now_utc()
    _download(args)
    if new := new_games(args.data, since):
        for setting in _cached_collection_settings(args.data):
            _embed_new(args.data, setting)
            _print_new_lookalikes(args.data, setting, since, len(new))
    return 0


def _cached_collection_settings(data) -> list[Setting]:
    """The settings cached in ``data`` whose cache is of the collection (not of an ``--images``
    folder) and whose model is in the registry (a cache's ``meta.json`` never chooses code to
    run); the others are skipped with a note."""
    found = []
    for name in layout.list_settings(data):
        try:
            meta = read_cache_meta(layout.embeddings_dir(data, name))
        except ValueError as e:
            print(f"  {name}: not updated ({e})")
            continue
        if meta.get("images") != folder_ref(layout.banners_dir(data), data):
            continue
        if not is_trusted_model(meta["model"], None):  # the folder may come from anyone
            print(f"{name}: new games not embedded (model {meta['model']!r} not in the registry)")
            continue
        found.append(Setting.from_meta(meta))
    return found


def _embed_new(data, setting: Setting) -> None:
    """Embed what the collection has and ``setting``'s cache lacks (the new games); a setting
    that cannot be loaded here (a local weights file, half precision off CUDA) is skipped."""
    try:
        emb = embed_folder(None, data, setting=setting, device="auto")
    except ValueError as e:
        print(f"{setting.name}: new games not embedded ({e})")
        return
    print(f"{setting.name}: {emb.embedded} embedded, {emb.reused} reused")


def _print_new_lookalikes(data, setting: Setting, since, count: int, shown: int = 10) -> None:
    """The end of a rerun's report: the new games' look-alikes from other studios."""
    try:
        table = find_lookalikes(data, setting, since=since, write=False)
    except ValueError as e:
        print(f"look-alikes of the new games: not computed ({e})")
        return
    print(
        f"{count} new game{'s' * (count != 1)}: {len(table)} look-alike pair"
        f"{'s' * (len(table) != 1)} from other studios ({setting.name})"
    )
    _print_pairs(table, shown)


def _printable(text) -> str:
    """A name from Steam for a terminal: control characters (escape sequences) dropped."""
    return "".join(c for c in str(text) if c.isprintable())


def _print_pairs(table, shown: int) -> None:
    for r in table.head(shown).itertuples(index=False):
        a = f"{_printable(r.name_a) or r.id_a} ({r.id_a}) [{_printable(r.studio_a)}]"
        b = f"{_printable(r.name_b) or r.id_b} ({r.id_b}) [{_printable(r.studio_b)}]"
        print(f"  {r.rank:>3}. {r.score:.3f}  {a}  ~  {b}")
    if len(table) > shown:
        print(f"  ... {len(table) - shown} more")


def _add_snapshot_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="snapshot .tar.gz, folder, URL, or july-2023")
    _add_data(p)
    p.add_argument("--apps", help="apps.json of an img2dataset snapshot, if not beside SRC")


def cmd_import_snapshot(args) -> int:

    n = import_snapshot(args.src, args.data, apps=args.apps)
    print(f"{n} banners imported -> {layout.banners_dir(args.data)}")
    return 0


def _add_folder_options(p: argparse.ArgumentParser) -> None:

    p.add_argument("src", help="folder of images (subfolders included)")
    _add_data(p)
    p.add_argument("--size", default=DEFAULT_SIZE, choices=list(SIZES), help="saved image size")


def cmd_import_folder(args) -> int:

    report = import_folder(args.src, args.data, size=args.size)
    print(f"{report} -> {layout.banners_dir(args.data)}")
    for rel, reason in list(report.skipped.items())[:10]:
        print(f"  skipped {rel}: {reason}")
    return 0


def _add_audit_options(p: argparse.ArgumentParser) -> None:

    p.add_argument(
        "--issue-types",
        nargs="+",
        choices=list(ISSUE_TYPES),
        metavar="TYPE",
        help=f"CleanVision issue types to exclude (default: all of {', '.join(ISSUE_TYPES)}; "
        f"for own images from import-folder all but {', '.join(STEAM_ONLY_TYPES)})",
    )
    p.add_argument(
        "--rule",
        action="append",
        default=[],
        metavar="TYPE=on|off",
        help="switch one check on or off over the defaults, e.g. grayscale=on (repeatable)",
    )
    p.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="TYPE=X",
        help="score threshold of an image-quality type, e.g. dark=0.2 (repeatable)",
    )
    p.add_argument(
        "--near-dup-threshold",
        type=float,
        default=NEAR_DUP_THRESHOLD,
        help=f"cosine for embedding near duplicates (default {NEAR_DUP_THRESHOLD}); 0 to skip",
    )
    p.add_argument(
        "--random-weights-duplicates",
        action="store_true",
        help="find embedding near duplicates even with --no-pretrained (skipped otherwise)",
    )


def _audit(args):

    thresholds = {}
    for item in args.threshold:
        kind, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--threshold wants TYPE=X, got {item!r}")
        thresholds[kind] = float(value)
    rules = {}
    for item in args.rule:
        kind, sep, value = item.partition("=")
        if not sep or value not in ("on", "off"):
            raise ValueError(f"--rule wants TYPE=on or TYPE=off, got {item!r}")
        rules[kind] = value == "on"
    _collection(args)  # a data folder without banners names the stages that make them
    result = audit_banners(
        args.data,
        setting=_setting(args),
        issue_types=args.issue_types,
        rules=rules,
        thresholds=thresholds,
        near_dup_threshold=args.near_dup_threshold or None,
        random_weights_duplicates=args.random_weights_duplicates,
        run=AuditRun(batch_size=args.batch_size, device=args.device),
    )
    # result.notes were logged as warnings when they arose: not printed a second time.
    reused = " (CleanVision results reused)" if result.reused else ""
    for rule, on, why in result.rules.itertuples(index=False):
        print(f"  {rule:<17} {'on ' if on else 'off'}  {why}")
    print(
        f"{len(result.issues)} banners audited{reused}, {len(result.exclusions)} excluded "
        f"-> {layout.exclusions_path(args.data)}"
    )
    return result


def cmd_audit(args) -> int:
    _audit(args)
    return 0


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--skip-download", action="store_true", help="use the banners already in DATA")
    p.add_argument(
        "--skip-audit", action="store_true", help="no audit (exclusions on disk still apply)"
    )


def cmd_run(args) -> int:
    since = now_utc()
    if not args.skip_download:
        _download(args)
    if not args.skip_audit:
        _audit(args)
    emb = _embed(args)
    exclude = _exclusions(args)
    table = _match(args, emb, exclude)
    path = layout.preview_path(args.data, emb.setting)
    with files.atomic_path(path) as tmp:
        fig = plot_games(args.data, emb, k=args.k, exclude=exclude, title=True)
        fig.savefig(tmp, format="png", dpi=80)
    print(f"done: {len(emb.ids)} banners, {len(table)} matches; preview of a few games -> {path}")
    if not args.skip_download and (new := new_games(args.data, since)):
        _print_new_lookalikes(args.data, as_setting(emb.setting), since, len(new))
    return 0


def _add_lookalikes_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--setting", help="a cached setting folder name (default: from --model etc.)")
    p.add_argument(
        "--k",
        type=positive_int,
        default=LOOKALIKE_K,
        help=f"mutual top-k among other studios' banners (default {LOOKALIKE_K})",
    )
    p.add_argument(
        "--games", nargs="+", type=int, metavar="ID", help="only pairs involving these app ids"
    )
    p.add_argument("--since", metavar="DATE", help="only pairs involving games first seen since")
    p.add_argument(
        "--include-excluded", action="store_true", help="ignore the audit's exclusion list"
    )
    p.add_argument(
        "--explain", type=count, default=0, metavar="N", help="heatmaps of the first N pairs"
    )
    p.add_argument("--show", type=count, default=20, metavar="N", help="pairs printed")


def cmd_lookalikes(args) -> int:
    setting = as_setting(args.setting) if args.setting else _setting(args)
    table = find_lookalikes(
        args.data,
        setting,
        k=args.k,
        games=args.games,
        since=args.since,
        include_excluded=args.include_excluded,
    )
    print(f"{len(table)} look-alike pairs from other studios ({setting.name})")
    _print_pairs(table, args.show)
    for r in table.head(args.explain).itertuples(index=False):
        path = layout.lookalike_explained_path(args.data, setting.name, r.id_a, r.id_b)
        fig = plot_match_explained(r.id_a, r.id_b, setting=setting, data=args.data)
        with files.atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=80)
        print(f"  heatmap -> {path}")
    print(f"-> {layout.lookalikes_path(args.data, setting.name)}")
    return 0


def _add_metadata_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--refresh", action="store_true", help="fetch every app again")


def cmd_metadata(args) -> int:

    print(
        f"{fetch_metadata(args.data, refresh=args.refresh)}\n-> {layout.metadata_path(args.data)}"
    )
    return 0


def _add_evaluate_options(p: argparse.ArgumentParser) -> None:

    p.add_argument("--settings", nargs="+", metavar="NAME", help="cached settings (default: all)")
    p.add_argument(
        "--truth",
        nargs="+",
        default=list(TRUTHS),
        choices=TRUTHS,
        metavar="TRUTH",
        help=f"among {', '.join(TRUTHS)} (default: all)",
    )
    p.add_argument("--k", type=int, default=10, help="ranks looked at (recall@k, map@k, ndcg@k)")
    p.add_argument(
        "--copies", type=count, default=COPY_SAMPLE, help="banners sampled for copy (0: none)"
    )
    p.add_argument("--weights", help="local weights file of a setting made with one (copy)")
    p.add_argument("--device", default="auto", help="where copies are embedded")
    p.add_argument(
        "--include-excluded",
        action="store_true",
        help="score every banner (default: leave out the audit's exclusions, as match does)",
    )


def cmd_evaluate(args) -> int:
    import pandas as pd

    result = evaluate_settings(
        args.data,
        args.settings,
        truths=args.truth,
        k=args.k,
        copies=args.copies,
        weights=args.weights,
        device=args.device,
        include_excluded=args.include_excluded,
    )
    if args.include_excluded:
        print("audit exclusions ignored: every banner scored")
    else:
        print(f"audit exclusions applied: {describe_exclusions(result.exclusions)}; not scored")
    ranked = rank_settings(result)
    with pd.option_context("display.width", 250, "display.max_columns", None):
        if ranked.empty:
            print("(nothing scored)")
        else:
            print("each figure: mean over queries [95% bootstrap interval]")
            print(tabulate_evaluation(result.summary, order=ranked.index).to_string())
            shown = ranked.drop(columns=["diff_low", "diff_high"]).round(3)
            print(
                f"\nsettings ranked by mean lift over random [95% interval]:\n{shown.to_string()}"
            )
    for label, reason in result.skipped.items():
        print(f"skipped {label}: {reason}")
    print(f"{describe_best(ranked)}\n-> {layout.evaluation_summary_path(args.data)}")
    return 0


def _add_site_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--setting", help="a cached setting folder name (default: from --model etc.)")
    p.add_argument(
        "--out",
        required=True,
        help="site folder outside DATA; its other files are kept, an earlier export replaced",
    )
    p.add_argument("--no-map", action="store_true", help="leave the catalogue map out")
    p.add_argument("--clusters", type=positive_int, help="map clusters (default: about sqrt(N)/4)")


def cmd_export_site(args) -> int:

    setting = args.setting or _setting(args).name
    report = export_site(
        args.data,
        setting,
        args.out,
        k=args.k,
        include_excluded=args.include_excluded,
        with_map=not args.no_map,
        n_clusters=args.clusters,
    )
    print(f"{report}\nopen it with: python -m http.server -d {args.out}")
    return 0


# Each stage: name, help, command, and its option groups in the order --help lists them.
_STAGES = [
    ("models", "list the model registry", cmd_models, []),
    (
        "embed",
        "embed a folder of images, reusing the cache",
        cmd_embed,
        [_add_images, _add_data, _add_embed_options],
    ),
    (
        "match",
        "all-pairs top-k neighbours of a cached setting",
        cmd_match,
        [_add_data, _add_model_options, _add_match_options],
    ),
    (
        "audit",
        "CleanVision + embedding near duplicates -> exclusion list",
        cmd_audit,
        [_add_data, _add_embed_options, _add_audit_options],
    ),
    (
        "run",
        "the main job: download, audit, embed, match, preview",
        cmd_run,
        [
            _add_data,
            _hidden_images,
            _add_download_options,
            _add_embed_options,
            _add_audit_options,
            _add_match_options,
            _add_run_options,
        ],
    ),
    (
        "download",
        "Steam banners -> DATA/banners + manifest (resumable)",
        cmd_download,
        [_add_data, _add_download_options],
    ),
    (
        "metadata",
        "developers, publishers, franchises, tags -> DATA/metadata.parquet",
        cmd_metadata,
        [_add_data, _add_metadata_options],
    ),
    (
        "lookalikes",
        "pairs of look-alike banners from different studios -> DATA/lookalikes/",
        cmd_lookalikes,
        [_add_data, _add_model_options, _add_lookalikes_options],
    ),
    (
        "evaluate",
        "score cached settings against catalogue truths and copies",
        cmd_evaluate,
        [_add_data, _add_evaluate_options],
    ),
    (
        "import-snapshot",
        "import a snapshot (ours or the July-2023 one)",
        cmd_import_snapshot,
        [_add_snapshot_options],
    ),
    (
        "import-folder",
        "any folder of images -> a collection (ids above Steam's, names)",
        cmd_import_folder,
        [_add_folder_options],
    ),
    (
        "export-site",
        "a static gallery of one setting (no server code)",
        cmd_export_site,
        [_add_data, _add_site_options, _add_model_options, _add_match_options],
    ),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m steam_dinov2", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="stage", required=True)
    for name, help_text, command, option_groups in _STAGES:
        p = sub.add_parser(name, help=help_text)
        for add in option_groups:
            add(p)
        p.set_defaults(func=command)
    return parser


def describe_os_error(e: OSError) -> str:
    """One line: the path, the system's words and, for the errors a user can fix, what to do."""
    advice = ERRNO_ADVICE.get(e.errno)
    if advice is None or not e.strerror:
        return " ".join(str(e).split())
    where = f"{e.filename}: " if e.filename else ""
    return f"{where}{e.strerror}; {advice}"


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader chatters at INFO
    if getattr(args, "k", 1) < 1:  # before any stage of `run` spends time
        print(
            f"error: --k is the number of neighbours per image, at least 1; got {args.k}",
            file=sys.stderr,
        )
        return 2
    try:
        return args.func(args)
    except OSError as e:
        print(f"error: {describe_os_error(e)}", file=sys.stderr)
        return 2
    except (ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # files and manifest are whole at any moment (atomic writes)
        print("interrupted; rerun to resume", file=sys.stderr)
        return INTERRUPTED
