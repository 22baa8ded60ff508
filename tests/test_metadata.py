"""Catalogue metadata from the fake Steam: labels, tags, tag names, reuse, and surviving faults."""

import pandas as pd
import pytest
from steam_server import App, FakeSteam

from steam_dinov2.cli import main
from steam_dinov2.core import layout
from steam_dinov2.steam.download import download_banners
from steam_dinov2.steam.metadata import fetch_metadata, read_metadata, read_tag_names

APPS = [App(i, f"Game {i}") for i in range(10, 70)] + [
    App(
        7,
        "Portal",
        developers=["Valve"],
        publishers=["Valve"],
        franchises=["Portal"],
        tags=[(3, 100), (1, 900), (2, 500)],
    ),
    App(8, "Crowded", developers=[f"Dev {i}" for i in range(100)] + ["", "  "], tags=[]),
]


def _metadata_requests(server):
    return [p for _, p, _ in server.log if "GetItems" in p and "include_basic_info" in p]


@pytest.fixture
def server():
    with FakeSteam(APPS) as s:
        yield s


def test_fetch_labels_tags_and_names_then_reuse(tmp_path, server):
    http = server.client(timeout=2, retries=0)
    report = fetch_metadata(tmp_path, [7, 8, *range(10, 70), 5], http=http, progress=False)
    assert (report.fetched, report.unknown, report.failed) == (62, 1, 0)
    df = read_metadata(tmp_path).set_index("app_id")
    assert len(df) == 63  # app 5 is unknown to the store: an empty row, not asked again
    portal = df.loc[7]
    assert portal.developers == ["Valve"] and portal.franchises == ["Portal"]
    assert portal.tagids == [1, 2, 3] and portal.tag_weights == [900.0, 500.0, 100.0]
    assert df.loc[11].developers == ["Studio 3"] and df.loc[5].developers == []
    assert len(df.loc[8].developers) == 32  # bounded; blank names dropped
    assert read_tag_names(tmp_path)[1] == "Tag 1"
    assert len(_metadata_requests(server)) == 2  # batches of 50

    server.reset_counts()
    again = fetch_metadata(tmp_path, [7, 8, *range(10, 70), 5, 70], http=http, progress=False)
    assert (again.reused, again.fetched, again.unknown) == (63, 0, 1)
    assert len(_metadata_requests(server)) == 1  # only the new app 70


@pytest.mark.parametrize("fault", ["500", "html", "shape"])
def test_faults_are_reported_and_the_rest_carries_on(tmp_path, server, fault):
    http = server.client(timeout=2, retries=0)
    server.metadata_faults = [fault]  # one of the two batches (they run concurrently)
    report = fetch_metadata(tmp_path, range(10, 70), http=http, progress=False)
    assert report.failed in (10, 50) and report.fetched == 60 - report.failed
    if fault != "shape":  # a well-formed answer without the apps is a failed batch too
        assert report.errors[0].startswith(("apps 10..59", "apps 60..69"))
    assert len(read_metadata(tmp_path)) == report.fetched
    fixed = fetch_metadata(tmp_path, range(10, 70), http=http, progress=False)
    assert (fixed.fetched, fixed.reused, fixed.failed) == (report.failed, report.fetched, 0)
    assert len(read_metadata(tmp_path)) == 60


def test_tag_names_fault_keeps_ids(tmp_path, server):
    http = server.client(timeout=2, retries=0)
    server.metadata_faults = [None, "500"]  # GetItems answers, then GetTagList fails
    report = fetch_metadata(tmp_path, [7], http=http, progress=False)
    assert report.fetched == 1 and report.tag_names == 0 and "tag names" in report.errors[0]
    assert read_metadata(tmp_path).tagids[0] == [1, 2, 3]
    again = fetch_metadata(tmp_path, [7, 10], http=http, progress=False)  # names still missing
    assert again.tag_names == 19 and read_tag_names(tmp_path)[3] == "Tag 3"


def test_download_fetches_metadata_and_survives_its_failure(tmp_path, server, monkeypatch):
    http = server.client(timeout=2, retries=0)
    server.metadata_faults = ["500"] * 10
    report = download_banners(tmp_path, source=[7, 10, 11], http=http, progress=False)
    assert report.ok == 3 and "3 failed" in report.metadata and "metadata:" in str(report)
    assert not layout.metadata_path(tmp_path).exists()
    # A folder made before (or whose metadata failed) is completed by the `metadata` command.
    server.metadata_faults = []
    for k, v in server.env().items():
        monkeypatch.setenv(k, v)
    assert main(["metadata", "--data", str(tmp_path)]) == 0
    df = read_metadata(tmp_path)
    assert sorted(df.app_id) == [7, 10, 11]
    manifest = pd.read_parquet(layout.manifest_path(tmp_path))
    assert set(manifest.orig_width) == {600} and set(manifest.orig_mode) == {"RGB"}
    assert set(manifest.width) == {256}  # the default size serves every preset


def test_damaged_table_is_fetched_again(tmp_path, server):
    layout.metadata_path(tmp_path).write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="metadata.parquet is not a metadata table"):
        read_metadata(tmp_path)
    report = fetch_metadata(tmp_path, [7], http=server.client(retries=0), progress=False)
    assert report.fetched == 1 and "not a metadata table" in report.errors[0]
    assert read_metadata(tmp_path).app_id.tolist() == [7]


def test_a_killed_fetch_keeps_its_checkpoints(tmp_path, server, monkeypatch):
    from steam_dinov2.steam import metadata

    monkeypatch.setattr(metadata, "GETITEMS_BATCH", 10)
    monkeypatch.setattr(metadata, "_CHECKPOINT", 1)
    real = metadata._try_batch

    def dies_at_30(ids, http):  # a kill while the third batch is in flight
        if ids[0] >= 30:
            raise KeyboardInterrupt
        return real(ids, http)

    monkeypatch.setattr(metadata, "_try_batch", dies_at_30)
    with pytest.raises(KeyboardInterrupt):
        fetch_metadata(tmp_path, range(10, 70), http=server.client(retries=0), progress=False)
    assert sorted(read_metadata(tmp_path).app_id) == list(range(10, 30))


def test_the_collection_is_what_gets_labels(tmp_path, server):
    """Metadata is fetched for the collection (``collection_images``): not for a banner whose
    row says error, nor for one's own images, which have no store page."""
    from synthetic import make_banner

    from steam_dinov2.core.files import OWN_ID_BASE

    own = OWN_ID_BASE + 5
    for app_id in (7, 10, 11, own):
        layout.banners_dir(tmp_path).mkdir(exist_ok=True)
        make_banner(app_id % 97).save(layout.banner_path(tmp_path, app_id))
    status = {7: "ok", 10: "ok", 11: "error", own: "ok"}
    table = pd.DataFrame({"app_id": list(status), "name": "x", "status": list(status.values())})
    table.to_parquet(layout.manifest_path(tmp_path))
    fetch_metadata(tmp_path, http=server.client(timeout=2, retries=0), progress=False)
    assert sorted(read_metadata(tmp_path)["app_id"]) == [7, 10]


# --- issue 17: Steam's metadata answers are untrusted like its banners ------------------------


@pytest.mark.parametrize(
    "fault, why",
    [
        ("deep", "GetItems answered something else than its JSON (RecursionError)"),
        ("list", "GetItems answered something else than its JSON (no response)"),
        ("gzip-bomb", "body larger than 8,388,608 bytes once decoded"),
        ("trickle", "deadline: body not complete within the deadline"),
    ],
)
def test_a_hostile_answer_fails_its_batch_not_the_command(tmp_path, fault, why):
    with FakeSteam(APPS, trickle_seconds=0.5) as server:
        http = server.client(timeout=5, retries=0, deadline=1.0)
        server.metadata_faults = [fault]  # one of the two batches (they run concurrently)
        report = fetch_metadata(tmp_path, range(10, 70), http=http, progress=False)
    assert report.failed in (10, 50) and report.fetched == 60 - report.failed
    assert len(report.errors) == 1 and why in report.errors[0]
    assert len(read_metadata(tmp_path)) == report.fetched


@pytest.mark.parametrize("fault", ["deep", "list", "gzip-bomb", "trickle"])
def test_a_hostile_tag_list_keeps_the_tag_ids(tmp_path, fault):
    with FakeSteam(APPS, trickle_seconds=0.5) as server:
        server.metadata_faults = [None, fault]  # GetItems answers, then GetTagList is hostile
        http = server.client(timeout=5, retries=0, deadline=1.0)
        report = fetch_metadata(tmp_path, [7], http=http, progress=False)
    assert report.fetched == 1 and report.tag_names == 0
    assert report.errors[0].startswith("tag names: ") and report.errors[0].endswith(
        "(tag ids kept)"
    )
    assert read_metadata(tmp_path).tagids[0] == [1, 2, 3]


def test_hostile_tag_values_are_left_out(tmp_path):
    hostile = [(True, 5), (3, 10**400), (4, float("nan")), (5, -1.0), (6, float("inf"))]
    hostile += [(2**40, 9), (-3, 9), (8, True), (9, "12"), (10, 1e300), (7, 12), (11, 0.5)]
    with FakeSteam([App(90, "Hostile", tags=hostile)]) as server:
        report = fetch_metadata(tmp_path, [90], http=server.client(retries=0), progress=False)
    assert (report.fetched, report.failed) == (1, 0)
    row = read_metadata(tmp_path).iloc[0]
    assert row.tagids == [7, 11] and row.tag_weights == [12.0, 0.5]


def test_a_failed_metadata_step_never_changes_downloads_exit_code(tmp_path, monkeypatch, capsys):
    (tmp_path / "apps.txt").write_text("7\n10\n11\n")
    with FakeSteam(APPS, trickle_seconds=0.5) as server:
        for k, v in server.env().items():
            monkeypatch.setenv(k, v)
        server.metadata_faults = ["deep"]  # the one GetItems batch of the metadata step
        argv = ["download", "--data", str(tmp_path / "d"), "--source", f"file:{tmp_path}/apps.txt"]
        assert main([*argv, "--deadline", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("3 ok, 0 no banner, 0 errors")
    assert "metadata: 0 apps fetched, 0 reused, 0 unknown to the store, 3 failed" in out
    assert "apps 7..11: ValueError: GetItems answered something else than its JSON" in out


def test_metadata_of_nothing_is_an_error(tmp_path, capsys):
    assert main(["metadata", "--data", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"error: data folder {tmp_path / 'missing'} not found: run `download` into it first\n"
    )
    assert not (tmp_path / "missing").exists()
    (tmp_path / "empty").mkdir()
    assert main(["metadata", "--data", str(tmp_path / "empty")]) == 2
    assert "no Steam apps in the collection of" in capsys.readouterr().err
