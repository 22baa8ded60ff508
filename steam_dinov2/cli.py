"""`python -m steam_dinov2 STAGE ...`: a thin shell over the package's functions."""

from __future__ import annotations

import argparse
import logging
import sys

from . import layout

INTERRUPTED = 130  # the shell's code for a process stopped by SIGINT


def _add_model_options(p: argparse.ArgumentParser) -> None:
    from .embed import POOLINGS
    from .preprocess import PRESETS

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


def _add_embed_options(p: argparse.ArgumentParser) -> None:
    _add_model_options(p)
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    p.add_argument(
        "--workers", type=int, default=None, help="decoding processes (default: by device)"
    )
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, ...")


def _setting(args) -> str:
    from .embed import precision_tag
    from .models import select_device, weights_tag

    tag = weights_tag(pretrained=not args.no_pretrained, weights=args.weights)
    precision = precision_tag(select_device(getattr(args, "device", "auto")))
    return layout.setting_name(
        args.model, args.preset, args.pooling, weights_tag=tag, precision=precision
    )


def _cmd_models(args) -> int:
    print(f"{'name':<20} {'family':<7} {'dim':>5} {'patch':>5}  timm architecture")
    from .models import available_models

    for m in available_models():
        print(f"{m['name']:<20} {m['family']:<7} {m['dim']:>5} {m['patch_size']:>5}  {m['arch']}")
    return 0


def _embed(args):
    from .embed import embed_folder

    emb = embed_folder(
        args.images or layout.banners_dir(args.data),
        args.data,
        model=args.model,
        preset=args.preset,
        pooling=args.pooling,
        pretrained=not args.no_pretrained,
        weights=args.weights,
        batch_size=args.batch_size,
        num_workers=args.workers,
        device=args.device,
    )
    print(
        f"{len(emb.ids)} images embedded ({emb.vectors.shape[1] if len(emb.ids) else 0} dims), "
        f"{len(emb.errors)} skipped -> {layout.embeddings_dir(args.data, emb.setting)}"
    )
    for i, reason in list(emb.errors.items())[:10]:
        print(f"  skipped {i}: {reason}")
    return emb


def _cmd_embed(args) -> int:
    _embed(args)
    return 0


def _exclusions(args) -> dict:
    from .audit import load_exclusions

    return {} if args.include_excluded else load_exclusions(args.data)


def _match(args, emb=None, exclude=None):
    from .embed import load_embeddings
    from .search import describe_exclusions, match_all

    exclude = _exclusions(args) if exclude is None else exclude
    emb = emb or load_embeddings(args.data, _setting(args))
    table = match_all(emb, k=args.k, exclude=exclude, data=args.data)
    if exclude:
        print(f"audit exclusions applied: {describe_exclusions(exclude)}; never neighbours")
    print(
        f"{len(table)} matches for {len(emb.ids)} images -> {layout.neighbors_path(args.data, emb.setting)}"
    )
    return table


def _add_match_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--k", type=int, default=10, help="neighbours per image (at least 1)")
    p.add_argument(
        "--include-excluded", action="store_true", help="ignore the audit's exclusion list"
    )


def _cmd_match(args) -> int:
    _match(args)
    return 0


def _add_download_options(p: argparse.ArgumentParser) -> None:
    from .download import DEFAULT_SIZE, DEFAULT_WORKERS, SIZES
    from .net import DEFAULT_DEADLINE

    p.add_argument(
        "--source",
        default="steamspy",  # as in the notebooks: no key needed
        help="steamspy (default), store (needs STEAM_API_KEY) or file:PATH",
    )
    p.add_argument("--limit", type=int, help="at most N apps from the source")
    p.add_argument("--size", default=DEFAULT_SIZE, choices=list(SIZES), help="saved banner size")
    # One meaning per flag: --workers is decoding processes (embed, audit, run) everywhere.
    p.add_argument(
        "--download-workers",
        dest="download_workers",
        type=int,
        default=DEFAULT_WORKERS,
        help="download threads",
    )
    p.add_argument(
        "--deadline",
        type=float,
        default=DEFAULT_DEADLINE,
        help="seconds a banner may take in all, retries included (a stalled CDN connection)",
    )


def _download(args):
    from .download import download_banners
    from .net import SteamHttp

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


def _cmd_download(args) -> int:
    _download(args)
    return 0


def _cmd_import_snapshot(args) -> int:
    from .snapshot import import_snapshot

    n = import_snapshot(args.src, args.data, apps=args.apps)
    print(f"{n} banners imported -> {layout.banners_dir(args.data)}")
    return 0


def _cmd_import_folder(args) -> int:
    from .folder import import_folder

    report = import_folder(args.src, args.data, size=args.size)
    print(f"{report} -> {layout.banners_dir(args.data)}")
    for rel, reason in list(report.skipped.items())[:10]:
        print(f"  skipped {rel}: {reason}")
    return 0


def _add_audit_options(p: argparse.ArgumentParser) -> None:
    from .audit import ISSUE_TYPES, NEAR_DUP_THRESHOLD

    p.add_argument(
        "--issue-types",
        nargs="+",
        choices=list(ISSUE_TYPES),
        metavar="TYPE",
        help=f"CleanVision issue types to exclude (default: all of {', '.join(ISSUE_TYPES)})",
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
    from .audit import audit_banners

    thresholds = {}
    for item in args.threshold:
        kind, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--threshold wants TYPE=X, got {item!r}")
        thresholds[kind] = float(value)
    result = audit_banners(
        args.data,
        issue_types=args.issue_types,
        thresholds=thresholds,
        near_dup_threshold=args.near_dup_threshold or None,
        model=args.model,
        preset=args.preset,
        pooling=args.pooling,
        pretrained=not args.no_pretrained,
        weights=args.weights,
        batch_size=args.batch_size,
        device=args.device,
        random_weights_duplicates=args.random_weights_duplicates,
    )
    for note in result.notes:
        print(f"NOTE: {note}")
    reused = " (CleanVision results reused)" if result.reused else ""
    print(
        f"{len(result.issues)} banners audited{reused}, {len(result.exclusions)} excluded "
        f"-> {layout.exclusions_path(args.data)}"
    )
    return result


def _cmd_audit(args) -> int:
    _audit(args)
    return 0


def _cmd_run(args) -> int:
    from .compare import plot_games

    if not args.skip_download:
        _download(args)
    if not args.skip_audit:
        _audit(args)
    emb = _embed(args)
    exclude = _exclusions(args)
    table = _match(args, emb, exclude)
    path = layout.preview_path(args.data, emb.setting)
    with layout.atomic_path(path) as tmp:
        plot_games(args.data, emb, k=5, exclude=exclude).savefig(tmp, format="png", dpi=80)
    print(f"done: {len(emb.ids)} banners, {len(table)} matches; preview of a few games -> {path}")
    return 0


def _cmd_metadata(args) -> int:
    from .metadata import fetch_metadata

    print(
        f"{fetch_metadata(args.data, refresh=args.refresh)}\n-> {layout.metadata_path(args.data)}"
    )
    return 0


def _cmd_evaluate(args) -> int:
    import pandas as pd

    from .evaluate import evaluate_settings
    from .scoreboard import describe_best, rank_settings

    result = evaluate_settings(
        args.data, args.settings, truths=args.truth, k=args.k, copies=args.copies,
        weights=args.weights, device=args.device,
    )  # fmt: skip
    ranked = rank_settings(result.summary)
    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(ranked.round(3).to_string() if not ranked.empty else "(nothing scored)")
    for label, reason in result.skipped.items():
        print(f"skipped {label}: {reason}")
    print(f"{describe_best(ranked)}\n-> {layout.evaluation_summary_path(args.data)}")
    return 0


def _cmd_export_site(args) -> int:
    from .site import export_site

    setting = args.setting or _setting(args)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m steam_dinov2", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="stage", required=True)

    p = sub.add_parser("models", help="list the model registry")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("embed", help="embed a folder of images, reusing the cache")
    p.add_argument("--images", help="image folder (default: DATA/banners)")
    p.add_argument("--data", required=True, help="data folder")
    _add_embed_options(p)
    p.set_defaults(func=_cmd_embed)

    p = sub.add_parser("match", help="all-pairs top-k neighbours of a cached setting")
    p.add_argument("--data", required=True, help="data folder")
    _add_model_options(p)
    _add_match_options(p)
    p.set_defaults(func=_cmd_match)

    p = sub.add_parser("audit", help="CleanVision + embedding near duplicates -> exclusion list")
    p.add_argument("--data", required=True, help="data folder")
    _add_embed_options(p)
    _add_audit_options(p)
    p.set_defaults(func=_cmd_audit)

    p = sub.add_parser("run", help="the main job: download, audit, embed, match, preview")
    p.add_argument("--data", required=True, help="data folder")
    p.add_argument("--images", help=argparse.SUPPRESS)
    _add_download_options(p)
    _add_embed_options(p)
    _add_audit_options(p)
    _add_match_options(p)
    p.add_argument("--skip-download", action="store_true", help="use the banners already in DATA")
    p.add_argument(
        "--skip-audit", action="store_true", help="no audit (exclusions on disk still apply)"
    )
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("download", help="Steam banners -> DATA/banners + manifest (resumable)")
    p.add_argument("--data", required=True, help="data folder")
    _add_download_options(p)
    p.set_defaults(func=_cmd_download)

    p = sub.add_parser(
        "metadata", help="developers, publishers, franchises, tags -> DATA/metadata.parquet"
    )
    p.add_argument("--data", required=True, help="data folder")
    p.add_argument("--refresh", action="store_true", help="fetch every app again")
    p.set_defaults(func=_cmd_metadata)

    from .evaluate import COPY_SAMPLE, TRUTHS

    p = sub.add_parser("evaluate", help="score cached settings against catalogue truths and copies")
    p.add_argument("--data", required=True, help="data folder")
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
        "--copies", type=int, default=COPY_SAMPLE, help="banners sampled for copy (0: none)"
    )
    p.add_argument("--weights", help="local weights file of a setting made with one (copy)")
    p.add_argument("--device", default="auto", help="where copies are embedded")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("import-snapshot", help="import a snapshot (ours or the July-2023 one)")
    p.add_argument("src", help="snapshot .tar.gz, folder, URL, or july-2023")
    p.add_argument("--data", required=True, help="data folder")
    p.add_argument("--apps", help="apps.json of an img2dataset snapshot, if not beside SRC")
    p.set_defaults(func=_cmd_import_snapshot)

    from .download import DEFAULT_SIZE, SIZES

    p = sub.add_parser(
        "import-folder", help="any folder of images -> a collection (ids above Steam's, names)"
    )
    p.add_argument("src", help="folder of images (subfolders included)")
    p.add_argument("--data", required=True, help="data folder")
    p.add_argument("--size", default=DEFAULT_SIZE, choices=list(SIZES), help="saved image size")
    p.set_defaults(func=_cmd_import_folder)

    p = sub.add_parser("export-site", help="a static gallery of one setting (no server code)")
    p.add_argument("--data", required=True, help="data folder")
    p.add_argument("--setting", help="a cached setting folder name (default: from --model etc.)")
    p.add_argument("--out", required=True, help="site folder to write (replaced whole)")
    p.add_argument("--no-map", action="store_true", help="leave the catalogue map out")
    p.add_argument("--clusters", type=int, help="map clusters (default: about sqrt(N)/4)")
    _add_model_options(p)
    _add_match_options(p)
    p.set_defaults(func=_cmd_export_site)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader chatters at INFO
    if getattr(args, "k", 1) < 1:  # before any stage of `run` spends time
        print(f"error: --k is the number of neighbours per image, at least 1; got {args.k}",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        return args.func(args)
    except (ValueError, RuntimeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # files and manifest are whole at any moment (atomic writes)
        print("interrupted; rerun to resume", file=sys.stderr)
        return INTERRUPTED
