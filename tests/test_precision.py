"""Precision: chosen from the device (CPU flags and CUDA capability mocked, as neither can be
changed here), bf16 run for real on this CPU, caches of another precision never served or
replaced unasked, and the --precision flag."""

import json
import logging

import numpy as np
import pytest
import torch

from steam_dinov2 import embed_folder, embed_images, evaluate_settings, load_embeddings
from steam_dinov2.cli import main
from steam_dinov2.core import layout
from steam_dinov2.embedding import precision
from steam_dinov2.embedding.models import load_model, model_info
from steam_dinov2.embedding.setting import Setting
from steam_dinov2.evaluation.truths import copy_model

# The flags line of a Sapphire Rapids core, shortened; an AVX2-only EPYC; a Cooper Lake core.
AMX = "fpu vme sse sse2 avx avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8 avx512_fp16"
AVX2 = "fpu vme sse sse2 avx avx2 fma"
COOPER_LAKE = "fpu vme sse sse2 avx avx2 avx512f avx512_bf16"


@pytest.fixture
def cpuinfo(monkeypatch, tmp_path, cpu_without_bf16):
    """Write a /proc/cpuinfo with the given flags line and read it with the real parser."""

    def write(flags: str | None):
        path = tmp_path / "cpuinfo"
        text = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: some CPU\n"
        path.write_text(text + (f"flags\t\t: {flags}\n" if flags is not None else "") + "\n")
        monkeypatch.setattr(precision, "CPUINFO", path)
        monkeypatch.setattr(precision, "cpu_flags", cpu_without_bf16)  # the real one

    return write


@pytest.mark.parametrize(
    ("flags", "chosen", "named"),
    [
        (AMX, "bf16", "the CPU has amx_bf16 and avx512_bf16"),
        (COOPER_LAKE, "bf16", "avx512_bf16"),
        (AVX2, "fp32", "neither AMX nor AVX512-BF16"),
        (None, "fp32", "neither AMX nor AVX512-BF16"),  # no flags line (not an x86 Linux)
    ],
)
def test_auto_on_a_cpu_follows_its_bf16_flags_and_says_why(cpuinfo, caplog, flags, chosen, named):
    cpuinfo(flags)
    with caplog.at_level(logging.INFO, logger=precision.__name__):
        s = Setting.create("dinov2_vits14", pretrained=False, device="cpu")
    assert s.precision == chosen and s.auto_precision
    assert s.name == "dinov2_vits14__crop256__cls__random" + ("__bf16" if chosen == "bf16" else "")
    assert f"precision {chosen} on cpu: " in caplog.text and named in caplog.text


def test_an_unreadable_cpuinfo_means_no_bf16(cpuinfo, monkeypatch, tmp_path):
    cpuinfo(AMX)
    monkeypatch.setattr(precision, "CPUINFO", tmp_path / "absent")
    assert precision.choose_precision(torch.device("cpu"))[0] == "fp32"


@pytest.mark.parametrize(
    ("gpu", "capability", "chosen"),
    [("Tesla T4", (7, 5), "fp16"), ("NVIDIA A100", (8, 0), "bf16"), ("NVIDIA L4", (8, 9), "bf16")],
)
def test_auto_on_cuda_follows_the_compute_capability(monkeypatch, caplog, gpu, capability, chosen):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: gpu)
    with caplog.at_level(logging.INFO, logger=precision.__name__):
        s = Setting.create("dinov2_vits14", device="cuda")
    assert s.precision == chosen and s.name == f"dinov2_vits14__crop256__cls__{chosen}"
    assert f"precision {chosen} on cuda: {gpu} (compute capability " in caplog.text


def test_asked_precisions_are_checked_against_the_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="device cuda asked for, but CUDA is not available"):
        Setting.create("dinov2_vits14", device="cuda")
    assert precision.choose_precision(torch.device("mps"))[0] == "fp32"
    with pytest.raises(ValueError, match="precision bf16 runs on a CPU or a CUDA GPU; mps"):
        Setting.create("dinov2_vits14", precision="bf16", device="mps")
    with pytest.raises(ValueError, match="unknown precision 'int8'; available: auto, fp32, bf16"):
        Setting.create("dinov2_vits14", precision="int8", device="cpu")
    s = Setting.create("dinov2_vits14", precision="bf16", device="cpu")
    assert s.precision == "bf16" and not s.auto_precision


@pytest.mark.parametrize("asked", ["bf16", "fp16"])
def test_reduced_precision_runs_on_this_cpu_close_to_fp32(vits14, banner_dir, asked):
    paths = sorted(banner_dir.glob("*.jpg"))
    reduced = load_model("dinov2_vits14", pretrained=False, device="cpu", precision=asked)
    assert model_info(reduced).precision == asked
    # bf16 on a CPU casts the weights; fp16 there runs under autocast with fp32 weights.
    want = torch.bfloat16 if asked == "bf16" else torch.float32
    assert {p.dtype for p in reduced.parameters()} == {want}
    ref, kept_ref, _ = embed_images(paths, vits14, batch_size=4, progress=False)
    out, kept, errors = embed_images(paths, reduced, batch_size=4, progress=False)
    assert kept == kept_ref and not errors and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)
    cos = (out * ref).sum(axis=1)
    assert cos.min() > 0.99 and cos.min() < 1 - 1e-7  # close to fp32, yet not fp32
    # Each banner's nearest other banner is the same as in fp32 (90.jpg is a copy of 30.jpg).
    nearest = [np.argsort(-(v @ v.T), axis=1)[:, 1] for v in (ref, out)]
    np.testing.assert_array_equal(*nearest)


def _cached(data, setting):
    return json.loads(layout.cache_meta_path(layout.embeddings_dir(data, setting.name)).read_text())


def test_a_cache_of_another_precision_is_served_or_extended_only_when_asked(
    vits14, banner_dir, tmp_path, cpuinfo
):
    data = tmp_path / "data"
    fp32 = Setting("dinov2_vits14", weights="random")
    made = embed_folder(banner_dir, data, setting=fp32, model=vits14, progress=False)
    before = _cached(data, fp32)
    cpuinfo(AMX)  # the data folder moves to a machine with AMX
    auto = Setting.create("dinov2_vits14", pretrained=False, device="cpu")
    assert auto.precision == "bf16"
    with pytest.raises(ValueError) as e:
        embed_folder(banner_dir, data, setting=auto, device="cpu", progress=False)
    msg = str(e.value)
    assert "cached in" in msg and "in fp32, while this machine picks bf16" in msg
    assert "--precision fp32 " in msg and f"to extend {fp32.name}" in msg
    assert "--precision bf16 " in msg and "\n" not in msg
    with pytest.raises(
        ValueError, match=f"it is cached in another precision: use {fp32.name} with"
    ):
        load_embeddings(data, auto)
    assert layout.list_settings(data) == [fp32.name]  # nothing embedded, nothing mixed
    # Asked for: fp32 is served as it was; bf16 is a cache of its own beside it.
    asked = Setting.create("dinov2_vits14", pretrained=False, precision="fp32", device="cpu")
    assert load_embeddings(data, asked).vectors.tobytes() == made.vectors.tobytes()
    bf16 = auto.in_precision("bf16")
    emb = embed_folder(banner_dir, data, setting=bf16, device="cpu", progress=False)
    assert emb.embedded == len(made.ids) and emb.reused == 0
    assert _cached(data, bf16)["precision"] == "bf16" and _cached(data, fp32) == before
    # Now both are cached: "auto" serves its own, and evaluate compares them as two settings.
    assert load_embeddings(data, auto).vectors.tobytes() == emb.vectors.tobytes()
    result = evaluate_settings(
        data, truths=("copy",), k=3, copies=2, variants=("gray",), images=banner_dir
    )
    pair = result.agreement[["setting_a", "setting_b"]].values.tolist()
    assert pair == [sorted([fp32.name, bf16.name])]
    # Copies are embedded as each collection was: the bf16 cache's model runs in bf16.
    assert model_info(copy_model(_cached(data, bf16), device="cpu")[0]).precision == "bf16"
    scored = set(result.summary.setting)
    assert scored == {fp32.name, bf16.name} and not result.skipped


def test_the_precision_flag(vits14, banner_dir, tmp_path, capsys, cpuinfo):
    data = tmp_path / "data"
    args = ["--images", str(banner_dir), "--data", str(data), "--no-pretrained"]
    assert main(["embed", *args, "--precision", "bf16", "--batch-size", "4"]) == 0
    assert layout.list_settings(data) == ["dinov2_vits14__crop256__cls__random__bf16"]
    cpuinfo(AVX2)
    assert main(["match", "--data", str(data), "--no-pretrained", "--k", "2"]) == 2
    err = capsys.readouterr().err
    assert "dinov2_vits14__crop256__cls__random__bf16 with --precision bf16" in err
    assert (
        main(
            ["match", "--data", str(data), "--no-pretrained", "--k", "2", *["--precision", "bf16"]]
        )
        == 0
    )
    with pytest.raises(SystemExit) as e:
        main(["embed", *args, "--precision", "fp8"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--precision: invalid choice: 'fp8'" in err and "fp32" in err and "bf16" in err
