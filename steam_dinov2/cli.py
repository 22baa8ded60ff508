"""`python -m steam_dinov2 STAGE ...`: a thin shell over the package's functions."""

from __future__ import annotations

import argparse
import logging
import sys

from .audit.audit import NEAR_DUP_THRESHOLD
from .audit.cleanvision import ISSUE_TYPES
from .commands import (
    cmd_audit,
    cmd_download,
    cmd_embed,
    cmd_evaluate,
    cmd_export_site,
    cmd_import_folder,
    cmd_import_snapshot,
    cmd_match,
    cmd_metadata,
    cmd_models,
    cmd_run,
)
from .core.codec import DEFAULT_SIZE, SIZES
from .core.net import DEFAULT_DEADLINE
from .embedding.pooling import POOLINGS
from .embedding.preprocess import PRESETS
from .evaluation.evaluate import COPY_SAMPLE, TRUTHS
from .steam.download import DEFAULT_WORKERS

INTERRUPTED = 130  # the shell's code for a process stopped by SIGINT


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


def _add_embed_options(p: argparse.ArgumentParser) -> None:
    _add_model_options(p)
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per forward pass")
    p.add_argument(
        "--workers", type=count, default=None, help="decoding processes (default: by device)"
    )
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, ...")


def _add_match_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--k", type=int, default=10, help="neighbours per image (at least 1)")
    p.add_argument(
        "--include-excluded", action="store_true", help="ignore the audit's exclusion list"
    )


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


def _add_audit_options(p: argparse.ArgumentParser) -> None:

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


def _add_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="data folder")


def _add_images(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", help="image folder, top level only (default: DATA/banners)")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--skip-download", action="store_true", help="use the banners already in DATA")
    p.add_argument(
        "--skip-audit", action="store_true", help="no audit (exclusions on disk still apply)"
    )


def _add_metadata_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--refresh", action="store_true", help="fetch every app again")


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


def _add_snapshot_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="snapshot .tar.gz, folder, URL, or july-2023")
    _add_data(p)
    p.add_argument("--apps", help="apps.json of an img2dataset snapshot, if not beside SRC")


def _add_folder_options(p: argparse.ArgumentParser) -> None:

    p.add_argument("src", help="folder of images (subfolders included)")
    _add_data(p)
    p.add_argument("--size", default=DEFAULT_SIZE, choices=list(SIZES), help="saved image size")


def _add_site_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--setting", help="a cached setting folder name (default: from --model etc.)")
    p.add_argument("--out", required=True, help="site folder to write (replaced whole)")
    p.add_argument("--no-map", action="store_true", help="leave the catalogue map out")
    p.add_argument("--clusters", type=positive_int, help="map clusters (default: about sqrt(N)/4)")


def _hidden_images(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", help=argparse.SUPPRESS)


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
    except (ValueError, RuntimeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # files and manifest are whole at any moment (atomic writes)
        print("interrupted; rerun to resume", file=sys.stderr)
        return INTERRUPTED
