"""Notebook set-up: the data folder in and out of Colab, and the stop of a notebook opened alone."""

import sys
import types

import pandas as pd
import pytest
from steam_server import App, FakeSteam

from steam_dinov2 import colab
from steam_dinov2.colab import NothingToDo, ensure_banners, resolve_data_dir
from steam_dinov2.core import layout


@pytest.fixture
def fake_colab(monkeypatch, tmp_path):
    """A stand-in for google.colab (Colab cannot run here): drive.mount records its calls and
    makes the Drive folder, which lives under tmp_path instead of /content/drive."""
    mounts = []

    def mount(where):
        mounts.append(where)
        (tmp_path / "drive" / "MyDrive").mkdir(parents=True)

    google = types.ModuleType("google")
    module = types.ModuleType("google.colab")
    module.drive = types.SimpleNamespace(mount=mount)
    google.colab = module
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", module)
    monkeypatch.setattr(colab, "DRIVE_MOUNT", str(tmp_path / "drive"))
    return mounts


def test_outside_colab_the_folder_is_the_one_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_data_dir("data") == tmp_path / "data" and (tmp_path / "data").is_dir()
    assert resolve_data_dir("data", mount_drive=False) == tmp_path / "data"
    with pytest.raises(ValueError, match="MOUNT_DRIVE = True needs Google Colab"):
        resolve_data_dir("data", mount_drive=True)


def test_in_colab_the_folder_defaults_to_drive(fake_colab, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = resolve_data_dir("steam-dinov2-data")
    assert path == tmp_path / "drive" / "MyDrive" / "steam-dinov2-data" and path.is_dir()
    assert fake_colab == [str(tmp_path / "drive")]
    resolve_data_dir("other", mount_drive=True)  # mounted already: not mounted twice
    assert len(fake_colab) == 1
    assert resolve_data_dir("local", mount_drive=False) == tmp_path / "local"
    assert resolve_data_dir(tmp_path / "abs") == tmp_path / "abs"  # an absolute path is kept


def test_in_colab_an_absolute_folder_off_drive_does_not_mount_it(fake_colab, tmp_path):
    assert resolve_data_dir(tmp_path / "vm") == tmp_path / "vm" and fake_colab == []
    assert resolve_data_dir(tmp_path / "vm", mount_drive=True) == tmp_path / "vm"
    assert len(fake_colab) == 1  # asked for: mounted


def test_empty_folder_stops_with_one_line_naming_the_notebook_to_run(tmp_path):
    with pytest.raises(NothingToDo) as info:
        ensure_banners(tmp_path)
    line = str(info.value)
    assert "\n" not in line and "download_steam_images.ipynb" in line and str(tmp_path) in line
    assert info.value._render_traceback_() == [line]  # IPython shows this line, no traceback


def test_empty_folder_fetches_a_small_set_when_asked(tmp_path, monkeypatch):
    with FakeSteam([App(a, name=f"Game {a}") for a in (10, 20, 30)] + [App(40, banner=None)]) as s:
        for k, v in s.env().items():
            monkeypatch.setenv(k, v)
        assert ensure_banners(tmp_path, if_empty="download") == 3
    assert sorted(layout.banner_files(tmp_path)) == [10, 20, 30]
    assert ensure_banners(tmp_path) == 3  # banners present: nothing fetched, no stop


def test_a_missing_snapshot_is_a_one_line_error(tmp_path):
    with pytest.raises(ValueError):  # import_snapshot's own one-line error for a missing file
        ensure_banners(tmp_path / "data", if_empty=str(tmp_path / "missing.tar.gz"))


def test_the_runtime_picks_lighter_defaults_on_a_cpu_and_keeps_the_users(tmp_path, monkeypatch):
    import torch

    from steam_dinov2.core.manifest import write_manifest

    data = tmp_path / "data"
    layout.banners_dir(data).mkdir(parents=True)
    for a in (10, 20, 30):
        (layout.banner_path(data, a)).write_bytes(b"x")
    write_manifest(data, pd.DataFrame({"app_id": [10, 20, 30], "status": "ok"}))
    cpu = colab.choose_runtime(data=data, device="cpu")
    assert not cpu.gpu and cpu.model == colab.CPU_MODEL and cpu.compare == colab.CPU_COMPARE
    assert all(model == "dinov2_vits14" for model, _, _ in cpu.compare)
    assert cpu.note.startswith("CPU-only runtime: dinov2_vits14, 2 comparison rows; embedding 3")
    mine = colab.choose_runtime("dino_vitb16", [["dino_vitb16", "full", "gem"]], device="cpu")
    assert mine.model == "dino_vitb16" and mine.compare == [("dino_vitb16", "full", "gem")]
    # A CUDA device (the detection mocked: no GPU here) keeps the full set.
    monkeypatch.setattr(colab, "select_device", lambda device: torch.device("cuda"))
    gpu = colab.choose_runtime()
    assert gpu.gpu and gpu.model == colab.GPU_MODEL and len(gpu.compare) == 4
