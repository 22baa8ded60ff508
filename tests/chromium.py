"""Debian's headless Chromium for the real-browser tests, driven by Playwright, kept on 127.0.0.1."""

from __future__ import annotations

import contextlib
import importlib.util
import shutil

CHROMIUM = shutil.which("chromium")
# Chromium must not phone home: no updates, sync, QUIC probes or first-run pages.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def missing(*modules: str) -> list[str]:
    """What a real-browser test lacks here: chromium, playwright and ``modules`` (pip names)."""
    needs = [("chromium (apt-get install chromium)", CHROMIUM)]
    needs += [
        (f"{m} (pip install {m})", importlib.util.find_spec(m)) for m in ("playwright", *modules)
    ]
    return [name for name, ok in needs if not ok]


@contextlib.contextmanager
def local_page(*, width: int, height: int = 1000, allow: tuple[str, ...] = ()):
    """A Playwright page that may only reach 127.0.0.1 (and ``allow`` URL prefixes).

    The page lists what it refused in ``page.blocked``, uncaught JavaScript exceptions in
    ``page.errors`` and dismissed dialogs (an ``alert`` would be an injection) in ``page.dialogs``.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        page.blocked, page.errors, page.dialogs = [], [], []

        def only_local(route):
            if route.request.url.startswith(("http://127.0.0.1:", *allow)):
                route.continue_()
            else:
                page.blocked.append(route.request.url)
                route.abort()

        page.route("**/*", only_local)
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
        try:
            yield page
        finally:
            context.close()
            browser.close()


@contextlib.contextmanager
def server_process(argv_for, *, cwd, env: dict, log, what: str, seconds: float = 60):
    """Run the server ``argv_for(port)`` starts (a free port on 127.0.0.1, its output in ``log``)
    until it listens; yield the port; then stop its whole process group (its kernels too)."""
    import os
    import signal
    import socket
    import subprocess
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv_for(port),
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: its kernels go down with it
        )
    try:
        deadline = time.monotonic() + seconds
        while True:
            assert proc.poll() is None, f"{what} exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"{what} never listened:\n{log.read_text()}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        yield port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        print(f"{what} log:", log)
