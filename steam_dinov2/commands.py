"""The stages behind ``python -m steam_dinov2 STAGE``: each ``cmd_*`` takes the parsed options,
calls the package and prints one short report (``cli`` builds the parser)."""

from __future__ import annotations

from .audit.audit import AuditRun, audit_banners, load_exclusions
from .collection.folder import import_folder
from .collection.snapshot import import_snapshot
from .core import files, layout
from .core.net import SteamHttp
from .embedding.embed import embed_folder, load_embeddings
from .embedding.models import available_models
from .embedding.setting import Setting
from .evaluation.evaluate import evaluate_settings
from .evaluation.scoreboard import describe_best, rank_settings
from .search import describe_exclusions, match_all
from .steam.download import download_banners
from .steam.metadata import fetch_metadata
from .views.compare import plot_games
from .views.site import export_site


def _setting(args):
    """The ``Setting`` the model options name (``--model --preset --pooling --no-pretrained
    --weights``, and ``--device`` for the precision)."""

    return Setting.create(
        args.model,
        args.preset,
        args.pooling,
        pretrained=not args.no_pretrained,
        weights=args.weights,
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
    _download(args)
    return 0


def cmd_import_snapshot(args) -> int:

    n = import_snapshot(args.src, args.data, apps=args.apps)
    print(f"{n} banners imported -> {layout.banners_dir(args.data)}")
    return 0


def cmd_import_folder(args) -> int:

    report = import_folder(args.src, args.data, size=args.size)
    print(f"{report} -> {layout.banners_dir(args.data)}")
    for rel, reason in list(report.skipped.items())[:10]:
        print(f"  skipped {rel}: {reason}")
    return 0


def _audit(args):

    thresholds = {}
    for item in args.threshold:
        kind, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--threshold wants TYPE=X, got {item!r}")
        thresholds[kind] = float(value)
    _collection(args)  # a data folder without banners names the stages that make them
    result = audit_banners(
        args.data,
        setting=_setting(args),
        issue_types=args.issue_types,
        thresholds=thresholds,
        near_dup_threshold=args.near_dup_threshold or None,
        random_weights_duplicates=args.random_weights_duplicates,
        run=AuditRun(batch_size=args.batch_size, device=args.device),
    )
    # result.notes were logged as warnings when they arose: not printed a second time.
    reused = " (CleanVision results reused)" if result.reused else ""
    print(
        f"{len(result.issues)} banners audited{reused}, {len(result.exclusions)} excluded "
        f"-> {layout.exclusions_path(args.data)}"
    )
    return result


def cmd_audit(args) -> int:
    _audit(args)
    return 0


def cmd_run(args) -> int:

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
    return 0


def cmd_metadata(args) -> int:

    print(
        f"{fetch_metadata(args.data, refresh=args.refresh)}\n-> {layout.metadata_path(args.data)}"
    )
    return 0


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
    )
    ranked = rank_settings(result.summary)
    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(ranked.round(3).to_string() if not ranked.empty else "(nothing scored)")
    for label, reason in result.skipped.items():
        print(f"skipped {label}: {reason}")
    print(f"{describe_best(ranked)}\n-> {layout.evaluation_summary_path(args.data)}")
    return 0


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
