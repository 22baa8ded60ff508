"""Why ``net.SteamHttp.get`` keeps its own retry loop: what urllib3's ``Retry`` does not cover.

Issue 9 asks to use urllib3's ``Retry`` on an ``HTTPAdapter`` unless a test shows it falls short.
These tests are that evidence, against the fake Steam on 127.0.0.1: each runs the same fault
through a ``requests.Session`` with ``Retry`` and through ``SteamHttp``. If a urllib3 release ever
covers the case, the first assertion fails and says to adopt it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import requests
import urllib3
from requests.adapters import HTTPAdapter

sys.path.insert(0, str(Path(__file__).parent))
from steam_server import App, FakeSteam  # noqa: E402

ADOPT = "urllib3's Retry now covers this: use it in net.SteamHttp (issue 9) and drop our loop"
RETRY_STATUS = [429, 500, 502, 503, 504]  # as net._RETRY_STATUS


def _retrying_session(**retry) -> requests.Session:
    """A session that retries with urllib3 alone, as issue 9 proposes."""
    s = requests.Session()
    policy = urllib3.util.Retry(total=3, backoff_factor=0, status_forcelist=RETRY_STATUS, **retry)
    s.mount("http://", HTTPAdapter(max_retries=policy))
    return s


def _url(server: FakeSteam, app_id: int) -> str:
    return f"{server.assets_base}/steam/apps/{app_id}/library_600x900.jpg"


def test_a_body_broken_halfway_is_retried_by_us_not_by_urllib3():
    # "truncated": headers with the full Content-Length, half the body, then a reset; the next
    # request of the same app is answered whole.
    apps = [App(1, faults=["truncated"]), App(2, faults=["truncated"])]
    with FakeSteam(apps) as server:
        whole = server.banner_bytes(server.apps[1])
        with _retrying_session() as session:
            try:
                body = session.get(_url(server, 1), timeout=5).content
            except requests.exceptions.RequestException:  # ChunkedEncodingError today
                body = None
        # Retry acts before the response is handed back; the body is read after, unguarded.
        assert body != whole, ADOPT
        assert server.hits[1] == 1, ADOPT  # not asked again

        http = server.client(timeout=5, retries=3, backoff=0)
        try:
            r = http.get(_url(server, 2))
        finally:
            http.close()
        assert r.status_code == 200 and r.content == server.banner_bytes(server.apps[2])
        assert server.hits[2] == 2  # the broken attempt, then the whole one


def test_retry_after_waits_past_the_deadline_in_urllib3_not_in_ours(fake_clock):
    # Three 429s asking for 100 s each, then the banner. A caller that gives the banner 5 s in
    # all (net.DEFAULT_DEADLINE is 30 s) cannot tell Retry so: it sleeps 300 s. Ours answers
    # with the 429 it has once another wait would pass the deadline.
    deadline = 5.0
    apps = [App(1, faults=["429"] * 3), App(2, faults=["429"] * 3)]
    with FakeSteam(apps, retry_after="100") as server:
        with _retrying_session(retry_after_max=120) as session:
            r = session.get(_url(server, 1), timeout=5)
        assert r.status_code == 200 and server.hits[1] == 4
        assert fake_clock.now > deadline, ADOPT  # 3 x 100 s on the clock urllib3 sleeps on

        start = fake_clock.now
        http = server.client(timeout=5, retries=3, backoff=0)
        try:
            r = http.get(_url(server, 2), deadline=deadline)
        finally:
            http.close()
        assert r.status_code == 429 and server.hits[2] == 1
        assert fake_clock.now - start <= deadline


@pytest.mark.parametrize("fault", ["500", "reset"])
def test_what_urllib3_does_cover_we_cover_too(fault):
    # The faults before a response is handed back: both recover (so the loop is needed only for
    # the two cases above, not for these).
    with FakeSteam([App(1, faults=[fault]), App(2, faults=[fault])]) as server:
        with _retrying_session() as session:
            assert session.get(_url(server, 1), timeout=5).content == server.banner_bytes(
                server.apps[1]
            )
        http = server.client(timeout=5, retries=3, backoff=0)
        try:
            assert http.get(_url(server, 2)).content == server.banner_bytes(server.apps[2])
        finally:
            http.close()


def test_an_error_message_is_cut_at_a_word_not_mid_word():
    from steam_dinov2.core.files import clip_text

    message = "HTTPSConnectionPool(host='cdn.example') read timed out after thirty seconds"
    clipped = clip_text(message + "\n" + message, 60)
    assert len(clipped) <= 60 and clipped.endswith("…") and "\n" not in clipped
    assert message.startswith(clipped[:-1]) and message[len(clipped) - 1] == " "
    assert clip_text("short", 60) == "short"
