"""Reduced precision against fp32: fidelity of the vectors and neighbour lists, and model speed.

Variants, each side by side with fp32 on the same images in one run:

- ``bf16``: what ``embed`` runs on a CPU with AMX or AVX512-BF16 (``load_model(precision="bf16")``:
  weights and input cast to bfloat16);
- ``bf16-autocast``: fp32 weights under ``torch.autocast("cpu", torch.bfloat16)`` (layer norms and
  softmax stay fp32);
- ``fp16-autocast``: ``load_model(precision="fp16")`` on the CPU (what CUDA runs for a T4);
- ``int8``: ``torch.ao.quantization.quantize_dynamic`` of every ``nn.Linear`` (qint8 weights,
  activations quantized per batch; the x86/oneDNN engine), the measured option of issue 23.

Fidelity, per collection and weights: the minimum over images of the cosine between an image's
vector and its fp32 vector, and the mean over images of the Jaccard overlap of its top-10
neighbour set (exact cosine, itself excluded) with fp32's. Collections: ``--n`` generated banners
(as the tests make them) and every ``--data`` folder (e.g. Debian's tuxpaint stamps imported
with ``import-folder``). Weights: the seeded random weights of the tests, and random values saved
in the official DINOv2 checkpoint layout (a ``.pth`` state dict with ``mask_token``, as the
parity tests write) and loaded from that file with ``weights=``. Neither is a trained model:
trained weights have larger activation outliers, so read these as the rounding of the
arithmetic, not a promise for every checkpoint.

Speed: model-only images/s on one batch of ``--batch-size`` preprocessed images, forwarded in
``embed.CPU_FORWARD_BATCH`` chunks as ``embed_images`` does, interleaved rounds, median.

Run: ``python benchmarks/bench_precision.py [--n 200] [--data DIR ...] [--limit 300]
[--variants bf16 int8 ...]`` (a few minutes on 2 idle cores; far longer on a loaded machine). Ends with ``TARGET <name>: <measured> (target <goal>)`` lines.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from synthetic import make_banner  # noqa: E402

from steam_dinov2 import embed_images, load_model, model_info  # noqa: E402
from steam_dinov2.core.images import images_of  # noqa: E402
from steam_dinov2.embedding.embed import CPU_FORWARD_BATCH  # noqa: E402
from steam_dinov2.embedding.pooling import pool_tokens  # noqa: E402
from steam_dinov2.embedding.precision import BF16_CPU_FLAGS, cpu_flags  # noqa: E402
from steam_dinov2.embedding.preprocess import make_transform  # noqa: E402

VARIANTS = ("fp32", "bf16", "bf16-autocast", "fp16-autocast", "int8")
K = 10


def official_weights(path: Path, model_name: str) -> Path:
    """Random values in the official DINOv2 checkpoint layout: another seed, LayerScale gammas
    drawn in [0.1, 1] (trained checkpoints hold values of that order, not the init's 1e-5 or
    1.0), and the ``mask_token`` the official files carry."""
    import timm

    from steam_dinov2.embedding.models import resolve_arch

    torch.manual_seed(1)
    model = timm.create_model(resolve_arch(model_name), pretrained=False, dynamic_img_size=True)
    state = model.state_dict()
    for k, v in state.items():
        if k.endswith(".gamma"):
            state[k] = torch.empty_like(v).uniform_(0.1, 1.0)
    torch.save({**state, "mask_token": torch.zeros(1, model.num_features)}, path)
    return path


def load_variant(variant: str, model_name: str, weights: Path | None):
    """``(model, context)``: the model a variant runs, and the context to run it in."""
    kw = {"pretrained": weights is not None, "weights": weights, "device": "cpu"}
    if variant in ("bf16", "fp16-autocast"):
        return load_model(model_name, precision=variant[:4], **kw), contextlib.nullcontext
    model = load_model(model_name, precision="fp32", **kw)
    if variant == "bf16-autocast":
        return model, lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    if variant == "int8":
        # In place: the module stays the one load_model registered (model_info still knows it).
        torch.ao.quantization.quantize_dynamic(
            model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True
        )
    return model, contextlib.nullcontext


def top_k(vectors: np.ndarray, k: int) -> np.ndarray:
    """(N, k) indices of each row's k nearest other rows by cosine (rows are unit length)."""
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def fidelity(vectors: np.ndarray, ref: np.ndarray, k: int) -> tuple[float, float]:
    """(min cosine to the reference rows, mean Jaccard of top-k sets against the reference's)."""
    cos = float((vectors * ref).sum(axis=1).min())
    a, b = top_k(vectors, k), top_k(ref, k)
    jac = [len(set(x) & set(y)) / len(set(x) | set(y)) for x, y in zip(a, b)]
    return cos, float(np.mean(jac))


def model_rates(model_name: str, batch: torch.Tensor, rounds: int, variants) -> dict[str, float]:
    """Model-only images/s of every variant (random weights), interleaved rounds, median."""
    runs = {v: load_variant(v, model_name, None) for v in variants}

    def once(model, ctx):
        t0 = time.perf_counter()
        with torch.inference_mode(), ctx():
            for part in batch.split(CPU_FORWARD_BATCH):
                pool_tokens(model, part, "cls")
        return time.perf_counter() - t0

    for model, ctx in runs.values():  # warm-up: oneDNN kernel selection, first allocations
        with torch.inference_mode(), ctx():
            pool_tokens(model, batch[:CPU_FORWARD_BATCH], "cls")
    seconds = {v: [] for v in variants}
    for r in range(rounds):
        for v in variants[r % len(variants) :] + variants[: r % len(variants)]:
            seconds[v].append(once(*runs[v]))
    return {v: len(batch) / statistics.median(s) for v, s in seconds.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200, help="generated banners (default 200)")
    ap.add_argument("--data", nargs="*", default=[], help="data folders of real pictures")
    ap.add_argument("--limit", type=int, default=300, help="at most N images of each --data")
    ap.add_argument("--model", default="dinov2_vits14")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--variants", nargs="+", default=VARIANTS[1:], choices=VARIANTS[1:], help="besides fp32"
    )
    args = ap.parse_args()
    variants = ("fp32", *args.variants)
    torch.set_num_threads(args.threads)
    flags = cpu_flags()
    print(
        f"# bench_precision  {time.strftime('%Y-%m-%d %H:%M')}  {platform.machine()}  "
        f"cores={os.cpu_count()}  torch={torch.__version__}  threads={torch.get_num_threads()}  "
        f"quantized engine={torch.backends.quantized.engine}  loadavg={os.getloadavg()[0]:.2f}"
    )
    print(f"CPU flags: {' '.join(sorted(f for f in flags if 'amx' in f or 'avx512' in f))}")
    print(f"bf16 in hardware: {', '.join(f for f in BF16_CPU_FLAGS if f in flags) or 'no'}")

    with tempfile.TemporaryDirectory(prefix="bench_precision_") as tmp:
        tmp = Path(tmp)
        generated = tmp / "generated"
        generated.mkdir()
        for i in range(args.n):
            make_banner(i).save(generated / f"{i}.jpg", quality=90)
        collections = {f"generated ({args.n})": sorted(generated.glob("*.jpg"))}
        for data in args.data:
            found = list(images_of(data).values())[: args.limit]
            collections[f"{Path(data).name} ({len(found)})"] = found
        weights = {
            "random": None,
            "official-format file": official_weights(tmp / "official.pth", args.model),
        }
        worst = {}
        for wname, wpath in weights.items():
            models = {v: load_variant(v, args.model, wpath) for v in variants}
            tags = {model_info(m).weights_tag for m, _ in models.values()}
            assert len(tags) == 1, tags  # every variant runs the same weights
            for cname, paths in collections.items():
                vectors = {}
                for v, (model, ctx) in models.items():
                    with ctx():
                        vectors[v], kept, errors = embed_images(
                            paths, model, batch_size=args.batch_size, progress=False
                        )
                    assert not errors, next(iter(errors.items()))
                for v in variants[1:]:
                    cos, jac = fidelity(vectors[v], vectors["fp32"], K)
                    old = worst.get(v, (1.0, 1.0))
                    worst[v] = (min(old[0], cos), min(old[1], jac))
                    print(
                        f"{cname:<22} {wname:<21} {v:<14} min cos {cos:.5f}  jaccard@{K} {jac:.3f}"
                    )
            del models
        paths = collections[f"generated ({args.n})"][: args.batch_size]
        transform = make_transform("crop256")
        from PIL import Image

        ready = []
        for p in paths:
            with Image.open(p) as img:
                ready.append(transform(img))
        rates = model_rates(args.model, torch.stack(ready), args.rounds, variants)

    print(
        f"\n{args.model}, crop256, cls, batch {args.batch_size}, model-only, {args.rounds} rounds:"
    )
    for v in variants:
        print(f"  {v:<14} {rates[v]:6.2f} img/s  ({rates[v] / rates['fp32']:.2f} x fp32)")
    print(f"\nloadavg at the end: {os.getloadavg()[0]:.2f}")
    for v in variants[1:]:
        cos, jac = worst[v]
        print(
            f"TARGET {v} fidelity (worst over collections and weights): min cos {cos:.5f} "
            f"(target >= 0.999), jaccard@{K} {jac:.3f} (target >= 0.9)"
        )
    if not {"bf16", "int8"} <= set(variants):
        return
    bf16_ok = worst["bf16"][0] >= 0.999 and worst["bf16"][1] >= 0.9
    int8_ok = worst["int8"][0] >= 0.999 and worst["int8"][1] >= 0.9
    print(
        f"TARGET int8 kept only if faster than bf16 within the fidelity targets: "
        f"{rates['int8'] / rates['bf16']:.2f} x bf16, fidelity {'in' if int8_ok else 'OUT OF'} "
        f"target -> {'keep' if int8_ok and rates['int8'] > rates['bf16'] else 'drop'} "
        f"(bf16 fidelity {'in' if bf16_ok else 'OUT OF'} target)"
    )


if __name__ == "__main__":
    main()
