import json
import logging
import os
import shutil
import types

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from synthetic import make_banner

import steam_dinov2.embedding.cache as cache_mod
import steam_dinov2.embedding.embed as embed_mod
from steam_dinov2 import embed_folder, embed_images, load_embeddings, load_model, make_transform
from steam_dinov2.cli import main
from steam_dinov2.core import files, layout
from steam_dinov2.core.manifest import write_manifest
from steam_dinov2.embedding.embed import images_of
from steam_dinov2.embedding.models import forward_tokens
from steam_dinov2.embedding.pooling import pool_tokens
from steam_dinov2.embedding.setting import Setting
from steam_dinov2.search import export_matches, stored_matches
from steam_dinov2.views.site import export_site

RANDOM = Setting(weights="random")  # dinov2_vits14__crop256__cls__random, as `vits14` makes
GEM = Setting(pooling="gem", weights="random")


@pytest.fixture(scope="module")
def reg_model():
    return load_model("dinov2_vits14_reg", pretrained=False, device="cpu")


@pytest.mark.parametrize(
    ("pooling", "factor"), [("cls", 1), ("cls+avg", 2), ("last4cls", 4), ("gem", 1)]
)
def test_pooling_dims_and_norms(reg_model, pooling, factor):
    x = torch.stack([make_transform("crop256")(make_banner(s)) for s in (1, 2, 3)])
    with torch.inference_mode():
        out = pool_tokens(reg_model, x, pooling)
    assert out.shape == (3, 384 * factor) and out.dtype == torch.float32
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3))


def _plain_reference(model, x, pooling):
    """Each pooling by hand from the model's own blocks: plain torch, no forward_tokens."""
    t = model.norm_pre(model._pos_embed(model.patch_embed(x)))
    outs = []
    for block in model.blocks:
        t = block(t)
        outs.append(model.norm(t))
    last, prefix = outs[-1], model.num_prefix_tokens  # CLS + 4 registers
    patches = last[:, prefix:]
    if pooling == "cls+avg":
        v = torch.cat([last[:, 0], patches.sum(1) / patches.shape[1]], 1)
    elif pooling == "last4cls":
        v = torch.cat([o[:, 0] for o in outs[-4:]], 1)
    else:  # gem, p = 3, on patch tokens clamped to positive
        v = (patches.clamp(min=1e-6) ** 3).mean(1) ** (1 / 3)
    return v / v.norm(dim=1, keepdim=True), model.norm(t)


@pytest.mark.parametrize("pooling", ["cls+avg", "last4cls", "gem"])
def test_pooling_equals_a_plain_torch_reference(reg_model, pooling):
    x = torch.stack([make_transform("crop256")(make_banner(s)) for s in (4, 5)])
    with torch.inference_mode():
        ref, tokens = _plain_reference(reg_model, x, pooling)
        torch.testing.assert_close(tokens, reg_model.forward_features(x))  # the same forward
        torch.testing.assert_close(pool_tokens(reg_model, x, pooling), ref, atol=1e-5, rtol=0)


def test_register_tokens_are_not_patches(reg_model):
    x = make_transform("full")(make_banner(1))[None]
    with torch.inference_mode():
        (cls, patches), *_ = forward_tokens(reg_model, x)
        tokens = reg_model.forward_features(x)
    assert patches.shape == (1, 16 * 24, 384)  # 224x336 at 14 px
    assert tokens.shape[1] == 1 + 4 + 16 * 24
    assert torch.equal(patches, tokens[:, 5:]) and torch.equal(cls, tokens[:, 0])


def test_unknown_pooling_names_the_choices(vits14):
    with pytest.raises(ValueError, match="unknown pooling 'max'.*cls\\+avg"):
        pool_tokens(vits14, torch.zeros(1, 3, 224, 224), "max")


def test_batch_size_does_not_change_results(vits14, banner_dir):
    paths = sorted(banner_dir.iterdir())
    one, kept1, _ = embed_images(paths, vits14, batch_size=1, num_workers=0)
    many, kept4, _ = embed_images(paths, vits14, batch_size=4, num_workers=1)
    assert kept1 == kept4 == list(range(len(paths)))
    assert np.abs(one - many).max() < 1e-5


def test_bad_images_are_skipped_and_reported(vits14, banner_dir, tmp_path):
    good = sorted(banner_dir.iterdir())[:2]
    data = (banner_dir / "10.jpg").read_bytes()
    bad = {
        "truncated.jpg": data[: len(data) // 2],
        "empty.jpg": b"",
        "text.jpg": b"<html>not a banner</html>",
    }
    for name, content in bad.items():
        (tmp_path / name).write_bytes(content)
    # A decompression bomb: 8000x8000 pixels in a few kilobytes.
    Image.new("1", (8000, 8000)).save(tmp_path / "bomb.png")
    paths = [good[0], *(tmp_path / n for n in [*bad, "bomb.png"]), good[1]]
    vectors, kept, errors = embed_images(paths, vits14, batch_size=2, num_workers=0)
    assert kept == [0, 5] and vectors.shape == (2, 384)
    assert set(errors) == {str(p) for p in paths[1:5]}
    assert "too large" in errors[str(tmp_path / "bomb.png")]
    ref, _, _ = embed_images(good, vits14, num_workers=0)
    assert np.abs(ref - vectors).max() < 1e-5


def test_copy_is_the_nearest_neighbor(vits14, banner_dir):
    paths = sorted(banner_dir.iterdir(), key=lambda p: int(p.stem))
    vectors, _, _ = embed_images(paths, vits14, num_workers=0)
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -1)
    ids = [int(p.stem) for p in paths]
    assert ids[int(sims[ids.index(90)].argmax())] == 30


def _count_embedded(monkeypatch):
    calls = []
    real = embed_mod.embed_images

    def counting(paths, model, **kw):
        calls.append([os.path.basename(p) for p in paths])
        return real(paths, model, **kw)

    monkeypatch.setattr(embed_mod, "embed_images", counting)
    return calls


def test_cache_reuse_append_drop(vits14, banner_dir, tmp_path, monkeypatch):
    data = tmp_path / "data"
    calls = _count_embedded(monkeypatch)
    (banner_dir / "95.jpg").write_bytes(b"junk")
    first = embed_folder(banner_dir, data, model=vits14, num_workers=0)
    assert sorted(first.ids) == [10, 20, 30, 40, 50, 60, 70, 80, 90]
    assert set(first.errors) == {95}
    assert first.setting == "dinov2_vits14__crop256__cls__random"

    # Rerun: nothing embedded, not even the bad file again, and the model is never loaded.
    monkeypatch.setattr(Setting, "load_model", lambda *a, **k: pytest.fail("model loaded"))
    again = embed_folder(banner_dir, data, setting=RANDOM)
    assert len(calls) == 1 and again.ids == first.ids and set(again.errors) == {95}
    np.testing.assert_array_equal(again.vectors, first.vectors)

    # Append one, drop one: only the new image is embedded.
    make_banner(11).save(banner_dir / "110.jpg")
    (banner_dir / "20.jpg").unlink()
    grown = embed_folder(banner_dir, data, model=vits14, num_workers=0)
    assert calls[-1] == ["110.jpg"]
    assert 20 not in grown.ids and grown.ids[-1] == 110 and len(grown.ids) == 9
    for i in grown.ids[:-1]:
        np.testing.assert_array_equal(
            grown.vectors[grown.ids.index(i)], first.vectors[first.ids.index(i)]
        )
    loaded = load_embeddings(data, grown.setting)
    assert loaded.ids == grown.ids and np.array_equal(loaded.vectors, grown.vectors)
    folder = data / "embeddings" / grown.setting
    assert len(list(folder.glob("vectors-*.npy"))) == 1  # the old generation is gone

    # A changed file is embedded again.
    make_banner(12).save(banner_dir / "30.jpg")
    embed_folder(banner_dir, data, model=vits14, num_workers=0)
    assert calls[-1] == ["30.jpg"]


def test_cache_of_other_options_is_never_mixed_in(vits14, banner_dir, tmp_path, monkeypatch):
    data = tmp_path / "data"
    emb = embed_folder(banner_dir, data, model=vits14, num_workers=0)
    meta_file = data / "embeddings" / emb.setting / "meta.json"
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**meta, "preset": "full"}))  # as if made by another preset
    calls = _count_embedded(monkeypatch)
    redone = embed_folder(banner_dir, data, model=vits14, num_workers=0)
    assert len(calls[0]) == 9 and json.loads(meta_file.read_text())["preset"] == "crop256"
    np.testing.assert_allclose(redone.vectors, emb.vectors, atol=1e-6)
    other = embed_folder(banner_dir, data, setting=GEM, model=vits14, num_workers=0)
    assert other.setting != emb.setting and len(calls) == 2


def test_killed_write_keeps_the_old_cache(vits14, banner_dir, tmp_path, monkeypatch):
    data = tmp_path / "data"
    emb = embed_folder(banner_dir, data, model=vits14, num_workers=0)
    make_banner(13).save(banner_dir / "130.jpg")

    def dies(*a, **k):  # the process dies after the vectors, before meta.json is replaced
        raise KeyboardInterrupt

    monkeypatch.setattr(files, "write_text_atomic", dies)
    with pytest.raises(KeyboardInterrupt):
        embed_folder(banner_dir, data, model=vits14, num_workers=0)
    monkeypatch.undo()
    old = load_embeddings(data, emb.setting)
    assert old.ids == emb.ids and np.array_equal(old.vectors, emb.vectors)
    assert not list((data / "embeddings" / emb.setting).glob(".*tmp*"))


def test_a_fresh_model_extends_the_cache_consistently(banner_dir, tmp_path):
    data = tmp_path / "data"
    (banner_dir / "80.jpg").rename(tmp_path / "80.jpg")
    embed_folder(banner_dir, data, setting=RANDOM, num_workers=0)
    (tmp_path / "80.jpg").rename(banner_dir / "80.jpg")
    extended = embed_folder(banner_dir, data, setting=RANDOM, num_workers=0)
    scratch = embed_folder(banner_dir, tmp_path / "other", setting=RANDOM)
    order = [scratch.ids.index(i) for i in extended.ids]
    assert np.abs(extended.vectors - scratch.vectors[order]).max() < 1e-5


def test_missing_cache_names_the_cached_settings(tmp_path, vits14, banner_dir):
    embed_folder(banner_dir, tmp_path, model=vits14, num_workers=0)
    with pytest.raises(ValueError, match="run `embed` first.*dinov2_vits14__crop256__cls__random"):
        load_embeddings(tmp_path, "dinov2_vits14__crop256__cls")


def test_another_image_folder_never_replaces_a_cache(vits14, banner_dir, tmp_path):
    data = tmp_path / "data"
    emb = embed_folder(banner_dir, data, model=vits14, num_workers=0)
    other = tmp_path / "other"
    other.mkdir()
    make_banner(40).save(other / "400.jpg")
    with pytest.raises(ValueError, match="another data folder"):
        embed_folder(other, data, model=vits14, num_workers=0)
    assert load_embeddings(data, emb.setting).ids == emb.ids
    # Inside the data folder the path is stored relative to it: the folder can move.
    (data / "banners").mkdir()
    make_banner(41).save(data / "banners" / "410.jpg")
    embed_folder(data / "banners", tmp_path / "data2", model=vits14, num_workers=0)
    moved = embed_folder(data / "banners", data, setting=GEM, model=vits14, num_workers=0)
    assert moved.meta["images"] == "banners"


def test_checkpoints_every_n_images_or_seconds(vits14, banner_dir, tmp_path, monkeypatch):
    import steam_dinov2.embedding.cache as cache

    writes = []
    real = cache.write_checkpoint
    monkeypatch.setattr(
        cache, "write_checkpoint", lambda *a: writes.append(len(a[1].ids)) or real(*a)
    )
    emb = embed_folder(
        banner_dir, tmp_path / "a", model=vits14, batch_size=2, num_workers=0, checkpoint_every=4
    )
    assert writes == [4, 4]  # 9 images in batches of 2; the last one goes straight to the cache
    assert len(emb.ids) == 9 and not list((tmp_path / "a").rglob("checkpoint-*"))
    writes.clear()
    monkeypatch.setattr(cache, "CHECKPOINT_SECONDS", -1)  # as if every batch took too long
    embed_folder(banner_dir, tmp_path / "b", model=vits14, batch_size=2, num_workers=0)
    assert writes == [2, 2, 2, 2, 1]
    with pytest.raises(ValueError, match="checkpoint_every is a number of images, at least 1"):
        embed_folder(banner_dir, tmp_path / "c", model=vits14, checkpoint_every=0)


def test_a_copied_folder_is_recognised_by_content_not_embedded_again(
    vits14, banner_dir, tmp_path, monkeypatch
):
    data = tmp_path / "data"
    shutil.copytree(banner_dir, data / "banners")
    first = embed_folder(data / "banners", data, model=vits14, num_workers=0)
    assert (first.embedded, first.reused) == (9, 0)
    # `cp -r data data2` or a Drive round trip: same bytes, new mtimes (set apart on purpose:
    # copytree's copy2 would keep them).
    copy = tmp_path / "data2"
    shutil.copytree(data, copy)
    for p in (copy / "banners").iterdir():
        os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 10**9))
    calls = _count_embedded(monkeypatch)
    again = embed_folder(copy / "banners", copy, model=vits14, num_workers=0)
    assert calls == [] and (again.embedded, again.reused) == (0, 9)
    np.testing.assert_array_equal(again.vectors, first.vectors)
    # The new stamps were written back: the next run decides by stamp, and reads no file.
    monkeypatch.setattr(embed_mod, "content_hash", lambda p: pytest.fail(f"hashed {p}"))
    monkeypatch.setattr(cache_mod, "content_hash", lambda p: pytest.fail(f"hashed {p}"))
    assert embed_folder(copy / "banners", copy, model=vits14, num_workers=0).reused == 9
    monkeypatch.undo()
    # Same size, other bytes: embedded again.
    calls = _count_embedded(monkeypatch)
    path = copy / "banners" / "30.jpg"
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0xFF
    path.write_bytes(bytes(raw))
    changed = embed_folder(copy / "banners", copy, model=vits14, num_workers=0)
    assert calls == [["30.jpg"]] and changed.reused == 8


def _manifest(data, status: dict[int, str]) -> None:
    rows = {"app_id": list(status), "status": list(status.values()), "name": "g"}
    write_manifest(data, pd.DataFrame(rows))


def test_the_collection_is_the_manifests_ok_rows(vits14, banner_dir, monkeypatch, caplog):
    data = banner_dir.parent  # banner_dir is this data folder's banners/
    ok = {a: "ok" for a in range(10, 100, 10)}
    _manifest(data, {**ok, 20: "error", 100: "ok"})  # 20.jpg is on disk, 100.jpg is not
    want = [10, 30, 40, 50, 60, 70, 80, 90]
    assert list(images_of(data)) == list(images_of(data, banner_dir)) == want
    calls = _count_embedded(monkeypatch)
    with caplog.at_level(logging.WARNING):
        emb = embed_folder(banner_dir, data, model=vits14, num_workers=0)
    assert emb.ids == want and calls == [[f"{i}.jpg" for i in want]] and not emb.errors
    assert "whose file is missing: 100" in caplog.text
    # The manifest turns 30 to error: its cached vector is dropped, not served; nothing is
    # embedded, and None names the same collection as banners/.
    _manifest(data, {**ok, 20: "error", 30: "error"})
    monkeypatch.setattr(Setting, "load_model", lambda *a, **k: pytest.fail("model loaded"))
    again = embed_folder(None, data, setting="dinov2_vits14__crop256__cls__random")
    assert again.ids == [i for i in want if i != 30] and again.embedded == 0
    assert again.dropped == 1  # counted, not silent
    np.testing.assert_array_equal(again.vectors, np.delete(emb.vectors, want.index(30), 0))
    assert load_embeddings(data, again.setting).ids == again.ids
    assert len(calls) == 1


def test_a_folder_of_ones_own_images_is_not_the_collection(vits14, banner_dir, tmp_path, caplog):
    data, mine = tmp_path / "data", tmp_path / "mine"
    layout.banners_dir(data).mkdir(parents=True)
    _manifest(data, {10: "error"})  # about data's banners, not about this folder
    mine.mkdir()
    make_banner(1).save(mine / "10.jpg")
    make_banner(2).save(mine / "my game.png")
    with caplog.at_level(logging.WARNING):
        assert list(images_of(data, mine)) == [10]
    assert "skipped 1 image not named by an id (my game.png): import the folder" in caplog.text
    emb = embed_folder(mine, data, model=vits14, num_workers=0)
    assert emb.ids == [10] and emb.meta["images"] == str(mine.resolve())
    assert load_embeddings(data, emb.setting).ids == emb.ids  # not filtered by data's manifest
    with pytest.raises(ValueError, match="no images in"):
        embed_folder(None, data, model=vits14)  # the collection is empty: 10 is an error


def test_the_model_given_must_make_the_settings_vectors(vits14, banner_dir, tmp_path):
    with pytest.raises(ValueError, match="embeds as dinov2_vits14__crop256__cls__random, not"):
        embed_folder(banner_dir, tmp_path, setting=Setting(), model=vits14)
    with pytest.raises(ValueError, match="model must be a model from load_model, not str"):
        embed_folder(banner_dir, tmp_path, model="dinov2_vits14")
    assert not (tmp_path / "embeddings").exists()


def test_a_cache_of_another_setting_serves_only_the_collection(
    vits14, banner_dir, monkeypatch, caplog, capsys
):
    data = banner_dir.parent  # banner_dir is this data folder's banners/
    _manifest(data, {a: "ok" for a in range(10, 100, 10)})
    embed_folder(None, data, model=vits14, num_workers=0)
    before = embed_folder(None, data, setting=GEM, model=vits14, num_workers=0)
    assert main(["match", "--data", str(data), "--no-pretrained", "--pooling", "gem"]) == 0
    stale = layout.neighbors_path(data, GEM.name)
    assert stored_matches(data, load_embeddings(data, GEM)) is not None
    # 20's row turns error and 40's file is deleted; only the cls setting is embedded again.
    _manifest(data, {a: "error" if a == 20 else "ok" for a in range(10, 100, 10)})
    (banner_dir / "40.jpg").unlink()
    monkeypatch.setattr(Setting, "load_model", lambda *a, **k: pytest.fail("model loaded"))
    assert embed_folder(None, data, setting=RANDOM).dropped == 2
    cache = layout.embeddings_dir(data, GEM.name)
    written = {p.name: p.read_bytes() for p in cache.iterdir()}
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        emb = load_embeddings(data, GEM)
    want = [i for i in before.ids if i not in (20, 40)]
    assert emb.ids == want and emb.meta["count"] == 7
    np.testing.assert_array_equal(emb.vectors, before.vectors[[before.ids.index(i) for i in want]])
    # One warning (besides the manifest's about 40.jpg), naming how many, which and the fix.
    [warning] = [r for r in caplog.records if r.name == "steam_dinov2.core.images"]
    assert "2 cached banners are no longer in the collection" in warning.getMessage()
    assert "left out: 20, 40; rerun `embed` with this setting" in warning.getMessage()
    _manifest(data, {a: "ok" for a in range(10, 100, 10)})  # 20 is back; 40 is still gone
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert 40 not in load_embeddings(data, GEM).ids
    assert "1 cached banner is no longer in the collection" in caplog.text
    _manifest(data, {a: "error" if a == 20 else "ok" for a in range(10, 100, 10)})
    assert {p.name: p.read_bytes() for p in cache.iterdir()} == written  # readers never write
    # The match table made before is stale now (the Browser and export-site then search live),
    # and `match` makes a new one without them, as query or as neighbour.
    assert stored_matches(data, emb) is None
    assert main(["match", "--data", str(data), "--no-pretrained", "--pooling", "gem"]) == 0
    table = pd.read_parquet(stale)
    assert {20, 40}.isdisjoint({*table["query_id"], *table["id"]})
    assert "42 matches for 7 images" in capsys.readouterr().out
    site = export_site(data, GEM, data.parent / "site", k=3, with_map=False, progress=False)
    assert json.loads((site.out / "data" / "games.json").read_text())["ids"] == [
        str(i) for i in want
    ]


def test_embed_says_how_many_rows_left_the_collection(banner_dir, capsys):
    data = banner_dir.parent
    _manifest(data, {a: "ok" for a in range(10, 100, 10)})
    args = ["embed", "--data", str(data), "--no-pretrained", "--workers", "0"]
    assert main(args) == 0
    _manifest(data, {a: "error" if a == 20 else "ok" for a in range(10, 100, 10)})
    assert main(args) == 0
    out = capsys.readouterr().out
    assert (
        "0 embedded, 8 reused (384 dims), 0 skipped, 1 dropped (no longer in the collection)" in out
    )


@pytest.mark.parametrize("bad", [3, 2.5, ["dinov2_vits14__crop256__cls"]])
def test_a_setting_that_is_not_a_setting_is_refused_in_one_line(banner_dir, tmp_path, bad):
    message = f"setting must be a Setting, a setting name .* got {type(bad).__name__}$"
    with pytest.raises(ValueError, match=message):
        embed_folder(banner_dir, tmp_path, setting=bad)
    with pytest.raises(ValueError, match=message):
        export_matches(tmp_path, setting=bad)


@pytest.fixture
def a_cuda_gpu(monkeypatch):
    """A CUDA device of the given memory, as torch reports it (this machine has none)."""

    def gpu(gib: float):
        props = types.SimpleNamespace(total_memory=int(gib * (1 << 30)), name="a GPU")
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: props)
        return torch.device("cuda")

    return gpu


@pytest.mark.filterwarnings("ignore:This DataLoader will create 8 worker")  # 2 cores here
@pytest.mark.parametrize(("gib", "batch"), [(15.0, 256), (40.0, 256), (4.0, 128)])
def test_a_gpu_gets_large_batches_pinned_memory_and_decoding_workers(
    a_cuda_gpu, banner_dir, monkeypatch, gib, batch
):
    monkeypatch.setattr(os, "cpu_count", lambda: 12)
    paths = [str(p) for p in banner_dir.iterdir()]
    loader = embed_mod.image_loader(paths, "crop256", a_cuda_gpu(gib))
    assert loader.batch_size == batch and loader.pin_memory
    assert loader.num_workers == 8 and loader.prefetch_factor == embed_mod.PREFETCH_BATCHES
    # What the user asks for wins over the device's defaults.
    asked = embed_mod.image_loader(paths, "crop256", "cuda", batch_size=16, num_workers=0)
    assert (asked.batch_size, asked.num_workers, asked.prefetch_factor) == (16, 0, None)


def test_a_cpu_decodes_in_process_in_batches_of_32(banner_dir):
    paths = [str(p) for p in banner_dir.iterdir()]
    loader = embed_mod.image_loader(paths, "crop256", torch.device("cpu"))
    assert (loader.batch_size, loader.num_workers, loader.pin_memory) == (32, 0, False)
    pixels, idx, err = next(iter(loader))
    assert pixels.dtype == torch.uint8 and pixels.shape == (len(paths), 3, 224, 224)
    assert idx.tolist() == list(range(len(paths))) and not any(err)
