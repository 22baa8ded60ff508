"""Importing a folder of own images: first import and a rerun with nothing changed.

Writes N camera-sized JPEGs and PNGs (default 211, the size of the collection the issue was
tried with) into a temporary folder and times ``import_folder`` into a fresh data folder, then
again (every file unchanged: a stat each, no decode).

    python benchmarks/bench_folder.py [--n 211] [--size 1600x1200]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))


def main() -> None:
    from conftest import make_banner

    from steam_dinov2.collection.folder import import_folder

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=211)
    p.add_argument("--size", default="1600x1200", help="WxH of the images written")
    args = p.parse_args()
    w, h = (int(x) for x in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        src, data = Path(tmp) / "photos", Path(tmp) / "data"
        (src / "drawings").mkdir(parents=True)
        base = [make_banner(s, (w, h)) for s in range(8)]
        for i in range(args.n):  # one in five a PNG in a subfolder, as drawings often are
            img = base[i % 8].rotate(i % 7)
            if i % 5:
                img.save(src / f"photo {i:04d}.jpg", quality=90)
            else:
                img.save(src / "drawings" / f"drawing {i:04d}.png")
        t = time.perf_counter()
        first = import_folder(src, data, progress=False)
        t1 = time.perf_counter() - t
        t = time.perf_counter()
        again = import_folder(src, data, progress=False)
        t2 = time.perf_counter() - t
    print(
        f"first import of {args.n} images of {w}x{h}: {t1:.2f} s, {args.n / t1:.0f} images/s ({first})"
    )
    print(f"rerun, nothing changed: {t2:.3f} s ({again}); {t1 / t2:.0f}x faster than the first")


if __name__ == "__main__":
    main()
