"""How long the embedding cache takes to decide what is unchanged, at N files.

Writes N small synthetic files (random bytes named ``{id}.jpg``: the check never decodes them),
builds the cache rows ``embed_folder`` would hold for them (stamps and content hashes), then times
``list_images`` + ``stat`` + ``CachedRows.refresh`` in three cases (and, apart, listing the folder
as a data folder's collection, ``images_of``, against ``list_images``):

* unchanged: every stamp matches, no file is read;
* copied: the folder copied with new mtimes (``cp -r``, a Drive round trip): every file is hashed
  once and recognised, nothing would be embedded again;
* the next run after that: the new stamps were written back, so no file is read again.

Then what ``load_embeddings`` adds for a cache of the data folder's banners: the check that each
cached row is still in the collection (``image_files.in_collection``), with nothing and with one
row left out, against reading the cache alone; and the ``lstat`` per file that ``banner_files``
no longer makes for plain files.

    python benchmarks/bench_cache_check.py [--n 30000] [--size 2048]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from steam_dinov2.core import layout  # noqa: E402
from steam_dinov2.core.files import not_a_regular_file  # noqa: E402
from steam_dinov2.core.images import images_of, list_images  # noqa: E402
from steam_dinov2.core.manifest import write_manifest  # noqa: E402
from steam_dinov2.embedding.cache import (  # noqa: E402
    CachedRows,
    content_hash,
    read_cache,  # noqa: E402
    write_cache,
)
from steam_dinov2.embedding.embed import _stamp, load_embeddings  # noqa: E402
from steam_dinov2.embedding.setting import Setting  # noqa: E402


def _check(folder: Path, rows: CachedRows) -> tuple[float, int]:
    t = time.perf_counter()
    files = list_images(folder)
    now = {i: _stamp(p) for i, p in files.items()}
    by_content = rows.refresh(now, files)
    return time.perf_counter() - t, by_content


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=30_000)
    ap.add_argument("--size", type=int, default=2048, help="bytes per file")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "banners"
        src.mkdir()
        for i in range(1, args.n + 1):
            (src / f"{i}.jpg").write_bytes(rng.bytes(args.size))
        t = time.perf_counter()
        files = list_images(src)
        ids = list(files)
        hashes = [content_hash(files[i]) for i in ids]
        hash_all = time.perf_counter() - t
        vectors = np.zeros((len(ids), 8), np.float32)
        stamps = [_stamp(files[i]) for i in ids]
        rows = CachedRows(ids=ids, stamps=stamps, hashes=hashes, vectors=vectors)

        unchanged, n0 = _check(src, rows)
        copy = Path(tmp) / "copy"
        shutil.copytree(src, copy, copy_function=shutil.copy)  # copy: new mtimes
        for p in copy.iterdir():  # surely apart from the source's, whatever the clock's grain
            st = p.stat()
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        copied, n1 = _check(copy, rows)
        after, n2 = _check(copy, rows)
        assert len(rows.ids) == args.n and n1 == args.n and n0 == n2 == 0
        # What embed_folder lists for a data folder's banners/: the collection (the manifest's ok
        # rows on disk), against listing the folder alone.
        ok = {"app_id": range(1, args.n + 1), "status": "ok", "name": "g"}
        write_manifest(tmp, pd.DataFrame(ok))
        t = time.perf_counter()
        listed = list_images(src)
        t_list = time.perf_counter() - t
        t = time.perf_counter()
        collection = images_of(tmp, src)
        t_collection = time.perf_counter() - t
        assert collection.keys() == listed.keys()
        reading = _reading_costs(Path(tmp), ids, stamps, hashes, rng)

    print(f"N={args.n} files of {args.size} bytes")
    print(f"hashing every file once (first embed's extra read): {hash_all:.2f} s")
    print(f"check, unchanged stamps:            {unchanged:.2f} s ({n0} by content: no file read)")
    print(f"check, copied folder (new mtimes):  {copied:.2f} s ({n1} recognised by content)")
    print(f"check, next run after the copy:     {after:.2f} s ({n2} by content: no file read)")
    print(
        f"listing banners/: list_images {t_list:.2f} s, images_of (collection) {t_collection:.2f} s"
    )
    print(f"TARGET cache check of a copied folder at N={args.n}: {copied:.2f} s, 0 re-embedded")
    read_alone, whole, one_out, lstats = reading
    print(
        f"load_embeddings of a {args.n} x 384 cache of banners/: reading it {read_alone:.2f} s; "
        f"with the collection check {whole:.2f} s (+{whole - read_alone:.2f} s), one row left "
        f"out {one_out:.2f} s; an lstat per banner (no longer made for plain files) {lstats:.2f} s"
    )


def _best(run, repeats: int = 3) -> float:
    """The fastest of ``repeats`` runs, in seconds: the page cache is warm for each."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return min(times)


def _reading_costs(data: Path, ids, stamps, hashes, rng) -> tuple[float, float, float, float]:
    """Seconds (best of 3) to read a (N, 384) cache of ``data``'s banners alone (``read_cache``),
    through ``load_embeddings`` (+ the collection check), the same with one row's manifest row
    turned error, and of the lstat per banner ``banner_files`` made before."""
    setting = Setting(weights="random")
    folder = layout.embeddings_dir(data, setting.name)
    folder.mkdir(parents=True)
    vectors = rng.standard_normal((len(ids), 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    meta = {**setting.key(), "dim": 0, "images": "banners"}
    write_cache(folder, meta, ids, stamps, vectors, {}, hashes)
    read_alone = _best(lambda: read_cache(folder))
    whole = _best(lambda: load_embeddings(data, setting))
    status = ["ok"] * len(ids)
    status[0] = "error"
    write_manifest(data, pd.DataFrame({"app_id": [int(i) for i in ids], "status": status}))
    one_out = _best(lambda: load_embeddings(data, setting))
    assert len(load_embeddings(data, setting).ids) == len(ids) - 1
    banners, root = layout.banners_dir(data), layout.banners_dir(data).resolve()
    t = time.perf_counter()
    assert not any(not_a_regular_file(banners / f"{i}.jpg", root) for i in ids)
    return read_alone, whole, one_out, time.perf_counter() - t


if __name__ == "__main__":
    main()
