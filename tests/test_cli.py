import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from PIL import Image

from steam_dinov2.cli import main


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", "steam_dinov2", *map(str, args)], capture_output=True, text=True
    )


def test_embed_then_match_end_to_end(banner_dir, tmp_path):
    data = tmp_path / "data"
    (banner_dir / "95.jpg").write_bytes(b"\xff\xd8\xff")  # named by an id, not decodable
    r = _run(
        "embed",
        "--images",
        banner_dir,
        "--data",
        data,
        "--no-pretrained",
        "--pooling",
        "gem",
        "--batch-size",
        "4",
        "--precision",  # the names below are fp32's on any machine (auto: test_precision)
        "fp32",
    )
    assert r.returncode == 0, r.stderr
    assert "9 embedded, 0 reused (384 dims), 1 skipped" in r.stdout and "95" in r.stdout
    r = subprocess.run(r.args, capture_output=True, text=True)  # again: all cached, and it says so
    assert r.returncode == 0, r.stderr
    assert "0 embedded, 9 reused (384 dims), 1 skipped" in r.stdout
    r = _run(
        "match",
        "--data",
        data,
        "--no-pretrained",
        "--pooling",
        "gem",
        "--k",
        "3",
        "--precision",
        "fp32",
    )
    assert r.returncode == 0, r.stderr
    table = pd.read_parquet(
        data / "matches" / "dinov2_vits14__crop256__gem__random" / "neighbors.parquet"
    )
    assert len(table) == 27 and table.groupby("query_id").size().eq(3).all()
    assert table[(table.query_id == 90) & (table["rank"] == 1)]["id"].item() == 30


def test_models_lists_the_registry(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "dinov2_vitg14_reg" in out and "vit_small_patch16_224.dino" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["embed", "--data", "D", "--images", "nowhere"], "image folder not found: nowhere"),
        (["embed", "--data", "D", "--images", ".", "--model", "nope"], "unknown model 'nope'"),
        (["match", "--data", "D"], "no embeddings for setting 'dinov2_vits14__crop256__cls'"),
        (
            ["embed", "--data", "nodata"],
            "no collection in nodata (nodata/banners not found): run `download`, "
            "`import-snapshot` or `import-folder` first",
        ),
        (
            ["audit", "--data", "nodata"],
            "no collection in nodata (nodata/banners not found): run `download`",
        ),
        (
            ["embed", "--data", "D", "--images", ".", "--weights", "/nonexistent.pth"],
            "weights file not found: /nonexistent.pth (--weights)",
        ),
        (
            ["export-site", "--data", "D", "--setting", "nonsense", "--out", "site"],
            "setting name 'nonsense' must look like model__preset__pooling",
        ),
    ],
)
def test_bad_input_exits_non_zero_with_one_line(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


@pytest.mark.parametrize(
    ("args", "flag", "least"),
    [
        (["embed", "--batch-size", "0"], "--batch-size", 1),
        (["embed", "--batch-size", "-3"], "--batch-size", 1),
        (["audit", "--workers", "-1"], "--workers", 0),
        (["download", "--limit", "0"], "--limit", 1),
        (["download", "--download-workers", "0"], "--download-workers", 1),
        (["evaluate", "--copies", "-1"], "--copies", 0),
        (["export-site", "--out", "site", "--clusters", "0"], "--clusters", 1),
    ],
)
def test_a_count_below_its_least_exits_2_at_parse_time(tmp_path, capsys, args, flag, least):
    with pytest.raises(SystemExit) as e:
        main([*args, "--data", str(tmp_path / "data")])
    assert e.value.code == 2
    value = args[args.index(flag) + 1]
    assert f"argument {flag}: must be at least {least}, got {value}" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()  # refused before any stage ran


def test_zero_workers_and_zero_copies_are_allowed():
    from steam_dinov2.cli import build_parser

    args = build_parser().parse_args(["embed", "--data", "d", "--workers", "0"])
    assert args.workers == 0
    assert build_parser().parse_args(["evaluate", "--data", "d", "--copies", "0"]).copies == 0


def test_help_for_each_stage():
    for stage in ("embed", "match", "models"):
        r = _run(stage, "--help")
        assert r.returncode == 0 and "usage:" in r.stdout
    r = _run("embed", "--data", "D", "--preset", "bogus")
    assert r.returncode == 2 and "invalid choice: 'bogus'" in r.stderr


def test_run_downloads_audits_embeds_matches_and_previews(tmp_path):
    from steam_server import App, FakeSteam

    apps = [
        App(a, name=f"Game {a}", banner=f)
        for a, f in zip(range(10, 130, 10), ["rgb", "gray", "png"] * 4)
    ]
    data = tmp_path / "data"
    with FakeSteam(apps) as server:
        env = {
            **os.environ,
            "STEAMSPY_BASE": server.base,
            "STEAM_API_BASE": server.base,
            "STEAM_ASSETS_BASE": server.assets_base,
        }
        args = [
            "run",
            "--data",
            data,
            "--source",
            "steamspy",
            "--limit",
            "8",
            "--no-pretrained",
            "--k",
            "3",
            "--precision",  # the setting below is fp32's on any machine
            "fp32",
        ]
        r = subprocess.run(
            [sys.executable, "-m", "steam_dinov2", *map(str, args)],
            capture_output=True,
            text=True,
            env=env,
        )
    assert r.returncode == 0, r.stderr
    assert "8 ok, 0 no banner, 0 errors" in r.stdout and "8 banners audited" in r.stdout
    # Random weights: the audit skips embedding near duplicates and says so.
    note = "embedding near duplicates skipped: the model has random weights"
    assert note in r.stderr and note not in r.stdout  # said once, as a warning
    setting = "dinov2_vits14__crop256__cls__random"
    table = pd.read_parquet(data / "matches" / setting / "neighbors.parquet")
    excluded = set(json.loads((data / "audit" / "exclusions.json").read_text()))
    assert set(table.query_id) == set(range(10, 90, 10))
    assert not set(table.id) & excluded
    assert ("audit exclusions applied: " in r.stdout) == bool(excluded)
    with Image.open(data / "matches" / setting / "preview.png") as img:
        # --k 3: the query and 3 neighbours per row, 1.6 inches each at 80 dpi.
        assert img.width == 4 * 128 and img.height > 200
    assert f"preview of a few games -> {data / 'matches' / setting / 'preview.png'}" in r.stdout
    assert "8 new games: " in r.stdout  # the first run: every game is new


@pytest.mark.parametrize(
    "code, advice",
    [
        ("ENOSPC", "the disk is full: free some space"),
        ("EBUSY", "it is busy (open in another program, or a mount point)"),
        ("ENOTDIR", "a part of this path is a file, not a folder: choose a folder"),
        ("EROFS", "the filesystem is read-only: choose a folder you may write to"),
    ],
)
def test_os_errors_say_what_to_do_in_one_line(tmp_path, monkeypatch, capsys, code, advice):
    import errno

    from steam_dinov2.collection import folder

    def fail(*args, **kwargs):  # the system's error, which this machine cannot cause at will
        raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)), "d/banners/x.jpg")

    (tmp_path / "src").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "src" / "a.png")
    monkeypatch.setattr(folder, "_save", fail)
    assert main(["import-folder", str(tmp_path / "src"), "--data", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.split("\n")[-2].split("\r")[-1]  # after the progress bar
    assert err.startswith(f"error: d/banners/x.jpg: {os.strerror(getattr(errno, code))}; {advice}")
