"""How long ``import steam_dinov2`` takes, in a fresh interpreter each time.

Times the import inside a new subprocess (so nothing is cached in ``sys.modules``) for the
package alone, the package plus its first public name (which pulls torch), and the eager import
of a stage module, and prints medians over ``--runs`` interleaved rounds.

    python benchmarks/bench_import.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = {
    "import steam_dinov2": "import steam_dinov2",
    "steam_dinov2.load_model (first use)": "import steam_dinov2; steam_dinov2.load_model",
    "import steam_dinov2.embedding.embed (eager)": "import steam_dinov2.embedding.embed",
}
# Prints the seconds spent in the statement, and which heavy libraries it left loaded.
PROBE = """\
import sys, time
t = time.perf_counter()
{stmt}
dt = time.perf_counter() - t
heavy = [m for m in ("torch", "pandas", "requests", "PIL", "faiss") if m in sys.modules]
print(dt, ",".join(heavy))
"""


def _time_once(stmt: str) -> tuple[float, str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(stmt=stmt)],
        env=env,
        cwd=ROOT,  # `python -c` puts the working directory first on sys.path
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return float(out[0]), (out[1] if len(out) > 1 else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    times: dict[str, list[float]] = {name: [] for name in CASES}
    loaded: dict[str, str] = {}
    for _ in range(args.runs):  # interleaved, so a busy moment hits every case alike
        for name, stmt in CASES.items():
            seconds, loaded[name] = _time_once(stmt)
            times[name].append(seconds)

    for name in CASES:
        med = statistics.median(times[name])
        print(
            f"{name:40s} median {med * 1e3:8.1f} ms   heavy modules loaded: {loaded[name] or '-'}"
        )
    lazy = statistics.median(times["import steam_dinov2"])
    eager = statistics.median(times["import steam_dinov2.embedding.embed (eager)"])
    print(f"eager / lazy: {eager / lazy:.0f} x")
    print(f"TARGET import steam_dinov2: {lazy * 1e3:.0f} ms median (target < 500 ms)")


if __name__ == "__main__":
    main()
