"""A fake Steam on 127.0.0.1 for tests and benchmarks: app lists, GetItems, SteamSpy, banners.

It speaks the same shapes as the real endpoints (see ``steam_dinov2/steam.py``) and injects the
faults the downloader must survive. Start it with ``with FakeSteam(apps) as server: ...`` and point
``SteamHttp(api_base=server.base, assets_base=server.assets_base, steamspy_base=server.base)``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import socket
import struct
import threading
import time
import zlib
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from synthetic import make_banner

KEY = "sk-TEST-0123456789ABCDEF"
STEAMSPY_PAGE = 1000
FORMATS = ("rgb", "gray", "cmyk", "png", "bomb", "strip")


@dataclasses.dataclass
class App:
    """One fake app.

    Attributes:
        banner: "rgb", "gray", "cmyk" (JPEGs), "png" (PNG bytes served as .jpg), "bomb" (a
            ~110 KB PNG of 30000x30000 pixels) or "strip" (a PNG of 1x20000 pixels, under the
            input limit, 256x5,120,000 once resized); None for an app without a library capsule.
        hashed: art behind a content hash: the plain path 404s, GetItems gives the real one.
        faults: transient faults consumed one per banner request: "429", "500", "slow", "reset".
        broken: a fault on every request: "truncated", "html", "reset", "trickle" (headers at
            once, then one byte of the body every ``trickle_seconds``).
        developers, publishers, franchises, tags: store metadata (``basic_info`` and ``tags`` of
            GetItems); None gives a default derived from the app id, tags as ``(tagid, weight)``,
            sent as given: ``(True, 5)``, ``(3, 10**400)`` or ``(4, float("nan"))`` are hostile.
    """

    app_id: int
    name: str = ""
    kind: str = "game"
    banner: str | None = "rgb"
    hashed: bool = False
    faults: list[str] = dataclasses.field(default_factory=list)
    broken: str | None = None
    developers: list[str] | None = None
    publishers: list[str] | None = None
    franchises: list[str] | None = None
    tags: list[tuple] | None = None
    copy_of: int | None = None

    def metadata(self) -> dict:
        """``basic_info`` and ``tags`` as GetItems gives them."""
        a = self.app_id
        labels = {
            "developers": self.developers if self.developers is not None else [f"Studio {a % 4}"],
            "publishers": self.publishers if self.publishers is not None else [f"Label {a % 3}"],
            "franchises": self.franchises
            if self.franchises is not None
            else [f"Series {a % 3}"] * (a % 2 == 0),
        }
        info = {
            k: [{"name": n, "creator_clan_account_id": 1} for n in v] for k, v in labels.items()
        }
        tags = self.tags if self.tags is not None else [(a % 5 + 1, 900), (a % 7 + 10, 400)]
        return {
            "basic_info": {"short_description": f"About {self.name}", **info},
            "tagids": [t for t, _ in tags],
            "tags": [{"tagid": t, "weight": w} for t, w in tags],
        }

    @property
    def hash(self) -> str:
        return hashlib.sha1(str(self.app_id).encode()).hexdigest()


@functools.cache
def bomb_png(width: int = 30_000, height: int = 30_000) -> bytes:
    """A 1-bit PNG of ``width`` x ``height`` black pixels: ~110 KB for 30000x30000 (900 MP, 2.7 GB
    once decoded to RGB). Built row by row, so making it never holds the pixels either."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    z, row = zlib.compressobj(9), b"\0" * (1 + (width + 7) // 8)  # filter byte + packed bits
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def encode_banner(
    app_id: int, fmt: str = "rgb", size=(600, 900), *, copy_of: int | None = None
) -> bytes:
    """``app_id``'s synthetic banner (600x900 by default) encoded as ``fmt`` (see ``FORMATS``);
    with ``copy_of``, a near-copy of that app's banner instead (``App.copy_of``)."""
    if fmt == "bomb":
        return bomb_png()
    if fmt == "strip":
        return bomb_png(1, 20_000)
    if copy_of is not None:
        img = make_banner(copy_of, size)
        img.paste((255, 255, 255), (size[0] - 60, size[1] - 60, size[0] - 20, size[1] - 20))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=70)
        return buf.getvalue()
    img = make_banner(app_id, size)
    buf = io.BytesIO()
    if fmt == "gray":
        img.convert("L").save(buf, "JPEG", quality=90)
    elif fmt == "cmyk":
        img.convert("CMYK").save(buf, "JPEG", quality=90)
    elif fmt == "png":
        img.save(buf, "PNG")
    else:
        img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


class FakeSteam:
    """Threaded HTTP server speaking Steam's endpoints; counts what it served."""

    def __init__(
        self,
        apps: list[App],
        *,
        key: str = KEY,
        latency: float = 0.0,
        retry_after: str = "0.3",
        slow_seconds: float = 1.5,
        trickle_seconds: float = 1.0,
        banner_variants: int | None = None,
        metadata_faults: list[str] | None = None,
        bomb_bytes: int = 64 << 20,
    ):
        self.apps = {a.app_id: a for a in apps}
        self.key = key
        self.latency = latency
        self.retry_after = retry_after
        self.slow_seconds = slow_seconds
        self.trickle_seconds = trickle_seconds
        self.banner_variants = banner_variants  # benchmarks: reuse a few encoded banners
        # Consumed one per metadata request (GetItems with basic_info, GetTagList): "500",
        # "html" (200 with a page), "shape" (JSON of the wrong shapes), "list" (a JSON array),
        # "trickle" (a byte every ``trickle_seconds``), "gzip-bomb" (64 KB of gzip that
        # inflates to ``bomb_bytes``), "deep" (arrays nested 200,000 deep).
        self.metadata_faults = list(metadata_faults or [])
        self.bomb_bytes = bomb_bytes
        self.tag_names = {i: f"Tag {i}" for i in range(1, 20)}
        self.hits: Counter = Counter()  # banner requests per app id
        self.log: list[tuple[float, str, int]] = []  # (monotonic time, path, status)
        self.lock = threading.Lock()
        self._banners: dict[tuple[int, str], bytes] = {}
        handler = type("Handler", (_Handler,), {"steam": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # resets and timeouts are expected
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.assets_base = f"{self.base}/store_item_assets"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def client(self, **options):
        """A ``SteamHttp`` pointed at this server; ``options`` set timeouts and retries."""
        from steam_dinov2.core.net import SteamHttp

        return SteamHttp(
            api_base=self.base, assets_base=self.assets_base, steamspy_base=self.base, **options
        )

    def __enter__(self) -> FakeSteam:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def env(self) -> dict[str, str]:
        """Environment variables that point the package at this server."""
        return {
            "STEAM_API_BASE": self.base,
            "STEAM_ASSETS_BASE": self.assets_base,
            "STEAMSPY_BASE": self.base,
        }

    def banner_bytes(self, app: App) -> bytes:
        seed = app.app_id % self.banner_variants if self.banner_variants else app.app_id
        k = (seed, app.banner, app.copy_of)
        if k not in self._banners:
            self._banners[k] = encode_banner(seed, app.banner, copy_of=app.copy_of)
        return self._banners[k]

    def reset_counts(self) -> None:
        with self.lock:
            self.hits.clear()
            self.log.clear()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the client's connection pool is exercised
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle plus the client's
    # delayed ACK add ~40 ms to every response, which a real CDN does not.
    disable_nagle_algorithm = True
    steam: FakeSteam

    def log_message(self, *args) -> None:
        pass

    def _send(self, status: int, body: bytes, ctype: str, headers: dict | None = None) -> None:
        with self.steam.lock:
            self.steam.log.append((time.monotonic(), self.path, status))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, obj, status: int = 200) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _reset(self) -> None:
        # SO_LINGER 0: close() sends RST, the client sees "connection reset by peer".
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.steam.latency:
            time.sleep(self.steam.latency)
        url = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        path = url.path.rstrip("/")
        if path == "/IStoreService/GetAppList/v1":
            return self._app_list(q)
        if path == "/IStoreBrowseService/GetItems/v1":
            return self._get_items(q)
        if path == "/IStoreService/GetTagList/v1":
            return self._tag_list()
        if path == "/api.php":
            return self._steamspy(q)
        parts = path.split("/")
        if parts[1:4] == ["store_item_assets", "steam", "apps"] and parts[-1].endswith(".jpg"):
            return self._banner(int(parts[4]), parts[5:-1], parts[-1])
        self._send(404, b"not found", "text/plain")

    def _app_list(self, q: dict) -> None:
        if q.get("key") != self.steam.key:
            return self._send(403, b"<html><body>Forbidden</body></html>", "text/html")
        kinds = {
            k for k, p in (("game", "include_games"), ("dlc", "include_dlc")) if q.get(p) == "true"
        }
        last, limit = int(q.get("last_appid", 0)), min(int(q.get("max_results", 10_000)), 50_000)
        ids = sorted(a for a, app in self.steam.apps.items() if app.kind in kinds and a > last)
        page = ids[:limit]
        apps = [{"appid": a, "name": self.steam.apps[a].name, "last_modified": 1} for a in page]
        body = {"apps": apps, "have_more_results": len(ids) > limit}
        if page:
            body["last_appid"] = page[-1]
        self._json({"response": body})

    def _get_items(self, q: dict) -> None:
        query = json.loads(q["input_json"])
        assert len(query["ids"]) <= 50, "GetItems takes at most 50 ids"
        wants = query["data_request"]
        assert wants.get("include_assets") or wants.get("include_basic_info")
        if wants.get("include_basic_info") and self._metadata_fault():
            return
        items = []
        for ident in query["ids"]:
            app = self.steam.apps.get(int(ident["appid"]))
            if app is None:
                items.append({"item_type": 0, "id": int(ident["appid"]), "success": 42})
                continue
            assets = {"asset_url_format": f"steam/apps/{app.app_id}/${{FILENAME}}?t=1700000000"}
            assets["header"] = "header.jpg"
            if app.banner is not None:
                folder = f"{app.hash}/" if app.hashed else ""
                assets["library_capsule"] = f"{folder}library_600x900.jpg"
            items.append(
                {
                    "item_type": 0,
                    "id": app.app_id,
                    "success": 1,
                    "visible": True,
                    "name": app.name,
                    "appid": app.app_id,
                    "type": 0,
                    "assets": assets,
                }
            )
            if wants.get("include_basic_info"):
                items[-1] |= app.metadata()
        self._json({"response": {"store_items": items}})

    def _metadata_fault(self) -> bool:
        """Answer with the next metadata fault, if any; True when it did."""
        with self.steam.lock:
            fault = self.steam.metadata_faults.pop(0) if self.steam.metadata_faults else None
        if fault == "500":
            self._send(500, b"oops", "text/plain")
        elif fault == "html":
            self._send(200, b"<!doctype html><html>Sorry</html>", "text/html")
        elif fault == "shape":
            bad = [{"appid": "x", "success": 1, "basic_info": "dev", "tags": {"a": 1}}, 7, None]
            self._json({"response": {"store_items": bad, "tags": "none"}})
        elif fault == "list":
            self._json([{"response": {}}])
        elif fault == "deep":
            self._send(200, b"[" * 200_000 + b"]" * 200_000, "application/json")
        elif fault == "gzip-bomb":
            # Valid JSON once inflated: {"response": {"store_items": [], "pad": "   ...   "}}
            z = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: a gzip stream
            body = z.compress(b'{"response": {"store_items": [], "pad": "')
            spaces = b" " * (1 << 20)
            for _ in range(self.steam.bomb_bytes >> 20):
                body += z.compress(spaces)
            body += z.compress(b'"}}') + z.flush()
            self._send(200, body, "application/json", {"Content-Encoding": "gzip"})
        elif fault == "trickle":
            body = json.dumps({"response": {"store_items": [], "tags": []}}).encode()
            self._trickle(body, "application/json")
        return fault is not None

    def _trickle(self, body: bytes, content_type: str) -> None:
        """Headers at once, then one byte of the body every ``trickle_seconds``."""
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.flush()
        for i in range(len(body)):
            self.wfile.write(body[i : i + 1])
            self.wfile.flush()
            time.sleep(self.steam.trickle_seconds)

    def _tag_list(self) -> None:
        if self._metadata_fault():
            return
        tags = [{"tagid": t, "name": n} for t, n in self.steam.tag_names.items()]
        self._json({"response": {"version_hash": "1", "tags": tags}})

    def _steamspy(self, q: dict) -> None:
        if q.get("request") != "all":
            return self._json({})
        page = int(q.get("page", 0))
        ids = sorted(self.steam.apps)[page * STEAMSPY_PAGE : (page + 1) * STEAMSPY_PAGE]
        self._json({str(a): {"appid": a, "name": self.steam.apps[a].name} for a in ids})

    def _banner(self, app_id: int, folder: list[str], name: str) -> None:
        app = self.steam.apps.get(app_id)
        with self.steam.lock:
            self.steam.hits[app_id] += 1
            fault = app.faults.pop(0) if app and app.faults else (app.broken if app else None)
        want = [app.hash] if app and app.hashed else []
        if app is None or app.banner is None or folder != want or name != "library_600x900.jpg":
            return self._send(404, b"<html>404</html>", "text/html")
        if fault == "429":
            return self._send(
                429, b"slow down", "text/plain", {"Retry-After": self.steam.retry_after}
            )
        if fault == "500":
            return self._send(500, b"oops", "text/plain")
        if fault == "reset":
            return self._reset()
        if fault == "slow":
            time.sleep(self.steam.slow_seconds)
        if fault == "html":
            return self._send(200, b"<!doctype html><html>Sorry</html>", "text/html")
        body = self.steam.banner_bytes(app)
        if fault == "trickle":
            return self._trickle(body, "image/jpeg")
        if fault == "truncated":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            return self._reset()
        self._send(200, body, "image/jpeg")


def main() -> None:
    """Serve N generated apps until killed; prints the base URL (used by the benchmark)."""
    import argparse

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--apps", type=int, default=2000)
    p.add_argument("--latency", type=float, default=0.05, help="seconds added to each request")
    args = p.parse_args()
    apps = [App(i, f"Game {i}") for i in range(1, args.apps + 1)]
    with FakeSteam(apps, latency=args.latency, banner_variants=50) as server:
        for i in range(50):
            server.banner_bytes(apps[i])  # encode up front, outside the timed part
        print(server.base, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
