"""App lists and banner URLs against a fake Steam on 127.0.0.1."""

import json
import logging
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest  # noqa: E402
from steam_server import KEY, App, FakeSteam  # noqa: E402

from steam_dinov2.core.net import HttpError, SteamHttp, redact  # noqa: E402
from steam_dinov2.steam import catalog as steam  # noqa: E402


@pytest.fixture
def server():
    apps = [App(i, f"Game {i}") for i in range(10, 130)]
    apps += [App(i, f"DLC {i}", kind="dlc") for i in range(500, 510)]
    apps += [App(900, "Hashed", hashed=True), App(901, "Bare", banner=None)]
    with FakeSteam(apps) as s:
        yield s


@pytest.fixture
def http(server):
    return server.client(timeout=2, retries=1, backoff=0.01)


def _requests(server, path):
    return [t for t, p, _ in server.log if p.startswith(path)]


def test_store_pages_with_last_appid(server, http, monkeypatch):
    monkeypatch.setattr(steam, "STORE_PAGE_MAX", 50)
    df = steam.list_apps("store", api_key=KEY, http=http, progress=False)
    assert df["app_id"].tolist() == list(range(10, 130)) + [900, 901]  # games only
    assert df.loc[df.app_id == 11, "name"].item() == "Game 11"
    assert len(_requests(server, "/IStoreService/GetAppList/v1")) == 3  # 50 + 50 + 22
    assert str(df["app_id"].dtype) == "int64"


def test_store_kinds_and_limit(server, http):
    both = steam.list_apps("store", api_key=KEY, include=("games", "dlc"), http=http)
    assert len(both) == 132
    assert len(steam.list_apps("store", api_key=KEY, limit=7, http=http)) == 7
    with pytest.raises(ValueError, match="available: games, dlc"):
        steam.list_apps("store", api_key=KEY, include=("mods",), http=http)


def test_store_needs_a_key(http, monkeypatch):
    monkeypatch.delenv("STEAM_API_KEY", raising=False)
    with pytest.raises(ValueError, match="STEAM_API_KEY.*steamspy"):
        steam.list_apps("store", http=http)
    with pytest.raises(ValueError, match="rejected the key") as e:
        steam.list_apps("store", api_key="wrong-secret", http=http)
    assert "wrong-secret" not in str(e.value)
    monkeypatch.setenv("STEAM_API_KEY", KEY)
    assert len(steam.list_apps("store", http=http)) == 122


def test_key_never_logged_nor_in_errors(http, caplog):
    caplog.set_level(logging.DEBUG)
    steam.list_apps("store", api_key=KEY, http=http, progress=False)
    assert "GetAppList" in caplog.text  # urllib3 did log the request line...
    assert KEY not in caplog.text  # ...without the key
    dead = SteamHttp(api_base="http://127.0.0.1:9", retries=0, timeout=1)
    with pytest.raises(HttpError) as e:
        steam.list_apps("store", api_key=KEY, http=dead)
    assert KEY not in str(e.value) and KEY not in repr(e.value.__context__)
    assert e.value.__cause__ is None
    assert redact(f"x?key={KEY}&y=1") == "x?key=***&y=1"


def test_removed_v2_and_unknown_sources(http):
    with pytest.raises(ValueError, match="removed.*November 2025.*store.*steamspy.*file:PATH"):
        steam.list_apps("ISteamApps/GetAppList/v2", http=http)
    with pytest.raises(ValueError, match="available: store, steamspy, file:PATH"):
        steam.list_apps("gamedatacrunch", http=http)


def test_steamspy_pages_and_waits(fake_clock):
    apps = [App(i, f"G{i}") for i in range(1, 2501)]
    with FakeSteam(apps) as server:
        http = SteamHttp(steamspy_base=server.base, retries=0)
        df = steam.list_apps("steamspy", steamspy_wait=60, http=http, progress=False)
        times = _requests(server, "/api.php")  # on the fake clock: the minute passes at once
        assert len(df) == 2500 and df["name"].iloc[0] == "G1"
        assert len(times) == 3  # 1000 + 1000 + 500: a short page ends the listing
        assert all(b - a >= 60 for a, b in zip(times, times[1:], strict=False))
        server.reset_counts()
        assert len(steam.list_apps("steamspy", limit=1500, steamspy_wait=0, http=http)) == 1500
        assert len(_requests(server, "/api.php")) == 2


def test_file_sources(tmp_path):
    (tmp_path / "apps.json").write_text(json.dumps([10, 20, 30]))  # the July-2023 apps.json
    (tmp_path / "named.json").write_text(json.dumps([{"appid": 5, "name": "Five"}]))
    (tmp_path / "ids.txt").write_text("# comment\n7\n8\tEight\n")
    (tmp_path / "apps.csv").write_text("app_id,name\n3,Three\n4,\n")
    (tmp_path / "bad.csv").write_text("id,name\n3,Three\n")
    ls = steam.list_apps
    assert ls(f"file:{tmp_path / 'apps.json'}")["app_id"].tolist() == [10, 20, 30]
    assert ls(f"file:{tmp_path / 'named.json'}")["name"].tolist() == ["Five"]
    assert ls(f"file:{tmp_path / 'ids.txt'}").values.tolist() == [[7, ""], [8, "Eight"]]
    assert ls(f"file:{tmp_path / 'apps.csv'}").values.tolist() == [[3, "Three"], [4, ""]]
    with pytest.raises(ValueError, match="app_id"):
        ls(f"file:{tmp_path / 'bad.csv'}")
    with pytest.raises(ValueError, match="not found"):
        ls(f"file:{tmp_path / 'nope.txt'}")


def test_get_items_names_and_hashed_urls(server, http):
    items = steam.fetch_store_items([900, 901, 12, 123456] + list(range(20, 120)), http=http)
    assert len(_requests(server, "/IStoreBrowseService/GetItems/v1")) == 3  # batches of 50
    hashed = server.apps[900].hash
    assert items[900] == {
        "name": "Hashed",
        "banner_url": f"{server.assets_base}/steam/apps/900/{hashed}/library_600x900.jpg"
        "?t=1700000000",
    }
    assert items[901]["banner_url"] is None  # no library capsule: no banner
    assert items[12]["banner_url"].endswith("/steam/apps/12/library_600x900.jpg?t=1700000000")
    assert 123456 not in items


def test_bases_from_env_and_arguments(monkeypatch):
    monkeypatch.setenv("STEAM_API_BASE", "http://127.0.0.1:1/api/")
    monkeypatch.setenv("STEAM_ASSETS_BASE", "http://127.0.0.1:2/store_item_assets")
    monkeypatch.delenv("STEAMSPY_BASE", raising=False)
    h = SteamHttp()
    assert h.api_base == "http://127.0.0.1:1/api" and h.steamspy_base == "https://steamspy.com"
    assert steam.banner_url(440, http=h) == (
        "http://127.0.0.1:2/store_item_assets/steam/apps/440/library_600x900.jpg"
    )
    assert SteamHttp(api_base="http://x").api_base == "http://x"


def test_bad_app_files_name_the_file_and_line(tmp_path):
    txt = tmp_path / "apps.txt"
    txt.write_text("app_id,name\n620,Portal 2\n# a comment\nPortal,3\n")
    with pytest.raises(ValueError, match=r"apps.txt:4: 'Portal' is not a Steam app id"):
        steam.read_app_file(txt)
    txt.write_text("app_id\n620\n")
    assert steam.read_app_file(txt) == [(620, "")]
    bad_json = tmp_path / "apps.json"
    bad_json.write_text('[{"name": "no id"}]')
    with pytest.raises(ValueError, match="apps.json:1: None is not a Steam app id"):
        steam.read_app_file(bad_json)
    bad_json.write_text("{not json")
    with pytest.raises(ValueError, match="apps.json: not an app list"):
        steam.read_app_file(bad_json)


@pytest.mark.parametrize(
    ("name", "text", "line"),
    [("ids.txt", "10\n20\nabc\n", 3), ("apps.csv", "app_id,name\n3,Three\nx4,Four\n", 3)],
)
def test_a_bad_app_list_line_is_named_by_its_number(tmp_path, name, text, line):
    (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=rf"{name}:{line}: '[^']*' is not a Steam app id"):
        steam.list_apps(f"file:{tmp_path / name}")
