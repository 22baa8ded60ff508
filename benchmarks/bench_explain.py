"""Match explanation per pair on the CPU: dinov2_vits14 (random weights, same cost as pretrained),
torch at 1 and 2 threads (a busy machine makes 2 OpenMP threads much slower than 1), crop256 and
full presets; the patch similarity alone and the whole figure
(``plot_match_explained`` rendered to PNG). The model is loaded once (a Browser keeps it).

    python benchmarks/bench_explain.py              # ~1 min
"""

from __future__ import annotations

import io
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))

import torch  # noqa: E402


def main(pairs: int = 8) -> None:
    from conftest import make_banner

    from steam_dinov2 import Setting, load_model
    from steam_dinov2.views.explain import explain_match, plot_match_explained

    model = load_model("dinov2_vits14", pretrained=False, device="cpu")
    banners = [make_banner(s) for s in range(pairs + 1)]
    for threads, preset in [(1, "crop256"), (2, "crop256"), (1, "full"), (2, "full")]:
        torch.set_num_threads(threads)
        explain_match(banners[0], banners[1], model, preset=preset)  # warm-up
        sims, figs = [], []
        for i in range(pairs):
            t = time.perf_counter()
            explain_match(banners[i], banners[i + 1], model, preset=preset)
            sims.append(time.perf_counter() - t)
            t = time.perf_counter()
            setting = Setting(preset=preset, weights="random")
            fig = plot_match_explained(banners[i], banners[i + 1], setting=setting, model=model)
            fig.savefig(io.BytesIO(), format="png", dpi=72)
            figs.append(time.perf_counter() - t)
        print(
            f"{preset:<8} {threads} thread(s): patch similarity {statistics.median(sims):.3f} s, "
            f"figure as PNG {statistics.median(figs):.3f} s (medians of {pairs} pairs)"
        )
        print(
            f"TARGET explanation per pair ({preset}, {threads} thread(s), figure): {statistics.median(figs):.2f} s "
            "(target < 1 s)"
        )


if __name__ == "__main__":
    main()
