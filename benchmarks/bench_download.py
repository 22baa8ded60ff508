"""Banner download throughput: ours vs img2dataset vs the ideal workers / latency.

A fake Steam (tests/steam_server.py) runs in its own process and adds LATENCY to every request;
it serves 2,000 generated 600x900 JPEG banners. Both downloaders get the same URL list, the same
thread count and the same output size (shorter side 224, i.e. 224x336, JPEG quality 95).

    python benchmarks/bench_download.py [--img2dataset /work/venv-i2d/bin/img2dataset]

img2dataset's pins clash with ours, so it runs from its own virtual environment
(``python -m venv venv-i2d && venv-i2d/bin/pip install img2dataset``). Its wall time includes its
start-up; the line ``img2dataset start-up`` measures that on 10 URLs, and the adjusted rate
subtracts it (generous to img2dataset). Ours runs in-process, timed from the call.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from steam_dinov2.core.net import SteamHttp  # noqa: E402
from steam_dinov2.steam.download import download_banners  # noqa: E402

N = 2000
LATENCY = 0.05


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "tests" / "steam_server.py"),
            "--apps",
            str(N),
            "--latency",
            str(latency),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    return proc, proc.stdout.readline().strip()


def run_ours(base: str, workers: int) -> float:
    http = SteamHttp(api_base=base, assets_base=f"{base}/store_item_assets")
    with tempfile.TemporaryDirectory() as data:
        t = time.perf_counter()
        report = download_banners(
            data, source=list(range(1, N + 1)), workers=workers, http=http, progress=False
        )
        seconds = time.perf_counter() - t
    assert report.ok == N, report
    return N / seconds


def run_img2dataset(exe: str, base: str, workers: int, n: int = N) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        urls = Path(tmp) / "urls.txt"
        urls.write_text(
            "".join(
                f"{base}/store_item_assets/steam/apps/{i}/library_600x900.jpg\n"
                for i in range(1, n + 1)
            )
        )
        out = Path(tmp) / "images"
        options = {
            "--url_list": urls,
            "--output_folder": out,
            "--image_size": 224,
            "--resize_mode": "keep_ratio",
            "--thread_count": workers,
            "--processes_count": 1,
            "--output_format": "files",
            "--encode_quality": 95,
            "--timeout": 20,
            "--retries": 0,
            "--number_sample_per_shard": 10000,
        }
        cmd = [exe, *(str(x) for pair in options.items() for x in pair)]
        env = dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1")
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        seconds = time.perf_counter() - t
        got = len(list(out.glob("*/*.jpg")))
    return seconds, got


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--img2dataset", default=shutil.which("img2dataset") or "/work/venv-i2d/bin/img2dataset"
    )
    p.add_argument("--workers", type=int, nargs="+", default=[8, 16, 32, 64])
    args = p.parse_args()
    print(
        f"{N} banners 600x900 -> 224x336, {LATENCY * 1000:.0f} ms per request, {os.cpu_count()} CPUs"
    )

    proc, base = start_server(0.0)
    try:
        ceiling = max(run_ours(base, 32) for _ in range(2))
    finally:
        proc.kill()
    print(f"CPU-bound ceiling (no latency, 32 threads): {ceiling:.0f} banners/s")

    proc, base = start_server(LATENCY)
    results = {}
    try:
        run_ours(base, 8)  # warm-up: imports, JPEG codec, server threads
        for w in args.workers:
            ideal = w / LATENCY
            ours = run_ours(base, w)
            results[w] = ours
            print(
                f"ours  w={w:3d}: {ours:6.0f} banners/s  ideal {ideal:5.0f}  "
                f"ratio {ours / ideal:.2f}  (ideal capped by ceiling: {min(ideal, ceiling):.0f})"
            )
        i2d = {}
        if Path(args.img2dataset).exists():
            startup, _ = run_img2dataset(args.img2dataset, base, 8, n=10)
            print(f"img2dataset start-up (10 URLs): {startup:.1f} s")
            for w in args.workers:
                seconds, got = run_img2dataset(args.img2dataset, base, w)
                raw, adj = got / seconds, got / max(seconds - startup, 1e-3)
                i2d[w] = (raw, adj)
                print(
                    f"img2dataset w={w:3d}: {raw:6.0f} banners/s raw, {adj:6.0f} without "
                    f"start-up ({got}/{N} saved)"
                )
        else:
            print(f"img2dataset not found at {args.img2dataset}: skipped")
    finally:
        proc.kill()

    for w in args.workers:
        # The ideal is workers / latency until decoding + resizing saturate the CPUs.
        bound = min(w / LATENCY, ceiling)
        print(f"TARGET ours_vs_ideal_w{w}: {results[w] / bound:.2f} (target >= 0.8)")
        if w in i2d:
            # Whole runs, as a user waits for them; then without img2dataset's start-up, which is
            # generous to it (at 8 threads that figure can exceed workers / latency).
            raw, adj = i2d[w]
            print(f"TARGET ours_vs_img2dataset_w{w}: {results[w] / raw:.2f} (target > 1.0)")
            print(
                f"TARGET ours_vs_img2dataset_no_startup_w{w}: {results[w] / adj:.2f} (target > 1.0)"
            )
    print(f"TARGET cpu_ceiling_banners_per_s: {ceiling:.0f} (target: reported)")


if __name__ == "__main__":
    main()
