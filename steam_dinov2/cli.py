"""`python -m steam_dinov2 STAGE ...`: a thin shell over the package's functions."""

from __future__ import annotations

import argparse
import logging
import sys

from . import layout


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
    from .models import weights_tag

    tag = weights_tag(pretrained=not args.no_pretrained, weights=args.weights)
    return layout.setting_name(args.model, args.preset, args.pooling, weights_tag=tag)


def _cmd_models(args) -> int:
    print(f"{'name':<20} {'family':<7} {'dim':>5} {'patch':>5}  timm architecture")
    from .models import available_models

    for m in available_models():
        print(f"{m['name']:<20} {m['family']:<7} {m['dim']:>5} {m['patch_size']:>5}  {m['arch']}")
    return 0


def _embed(args):
    from .embed import embed_folder

    emb = embed_folder(
        args.images or layout.banners_dir(args.data), args.data, model=args.model,
        preset=args.preset, pooling=args.pooling, pretrained=not args.no_pretrained,
        weights=args.weights, batch_size=args.batch_size, num_workers=args.workers,
        device=args.device,
    )  # fmt: skip
    print(f"{len(emb.ids)} images embedded ({emb.vectors.shape[1] if len(emb.ids) else 0} dims), "
          f"{len(emb.errors)} skipped -> {layout.embeddings_dir(args.data, emb.setting)}")  # fmt: skip
    for i, reason in list(emb.errors.items())[:10]:
        print(f"  skipped {i}: {reason}")
    return emb


def _cmd_embed(args) -> int:
    _embed(args)
    return 0


def _match(args, emb=None):
    from .embed import load_embeddings
    from .search import match_all

    emb = emb or load_embeddings(args.data, _setting(args))
    table = match_all(emb, k=args.k, data=args.data)
    print(
        f"{len(table)} matches for {len(emb.ids)} images -> {layout.neighbors_path(args.data, emb.setting)}"
    )
    return table


def _cmd_match(args) -> int:
    _match(args)
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
    p.add_argument("--k", type=int, default=10, help="neighbours per image")
    p.set_defaults(func=_cmd_match)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader chatters at INFO
    try:
        return args.func(args)
    except (ValueError, RuntimeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
