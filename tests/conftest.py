import datetime
import os

# Before anything imports huggingface_hub: a hub call must fail at once, never retry for a minute.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TQDM_DISABLE", "1")

import pytest  # noqa: E402
from synthetic import make_banner  # noqa: E402


@pytest.fixture
def banner_dir(tmp_path):
    """A folder of 8 distinct banners named by app id 10..80, plus 90: a re-encoded copy of 30."""
    folder = tmp_path / "banners"
    folder.mkdir()
    for i in range(1, 9):
        make_banner(i).save(folder / f"{i * 10}.jpg", quality=95)
    make_banner(3).resize((216, 324)).resize((224, 336)).save(folder / "90.jpg", quality=80)
    return folder


@pytest.fixture
def fake_clock(monkeypatch):
    """``time.monotonic`` and ``time.sleep`` on a clock that moves only when something sleeps.

    Waits (Retry-After, rate limits) are then checked on the clock the code itself reads,
    exactly and at once, instead of against the wall clock. The fake server logs on it too.
    """
    import threading
    import time

    class Clock:
        def __init__(self):
            self.now, self.lock = 0.0, threading.Lock()

        def monotonic(self) -> float:
            return self.now

        def sleep(self, seconds: float) -> None:
            with self.lock:
                self.now += max(0.0, seconds)

    clock = Clock()
    monkeypatch.setattr(time, "monotonic", clock.monotonic)
    monkeypatch.setattr(time, "sleep", clock.sleep)
    return clock


@pytest.fixture(scope="session")
def vits14():
    """The real DINOv2 ViT-S/14 architecture with random (seeded) weights, on the CPU."""
    from steam_dinov2 import load_model

    return load_model("dinov2_vits14", pretrained=False, device="cpu")


def upload_to_browser(browser, name: str, content: bytes) -> None:
    """What the Browser's FileUpload widget holds after a user picks one file.

    ipywidgets 8 takes the value itself, a tuple of dicts. In 7 (what Colab ships) ``value`` is
    read-only: the front end sends ``metadata`` and ``data`` and bumps ``_counter``, and the widget
    builds ``{name: {"metadata": ..., "content": ...}}`` from them, so this does the same.
    """
    import ipywidgets

    upload = browser.upload
    if ipywidgets.__version__.startswith("7."):
        modified = int(datetime.datetime.now(datetime.timezone.utc).timestamp() * 1000)
        meta = {"name": name, "type": "image/png", "size": len(content), "lastModified": modified}
        upload.metadata, upload.data = [meta], [content]
        upload._counter += 1
        return
    upload.value = (
        {
            "name": name,
            "type": "image/png",
            "size": len(content),
            "content": memoryview(content),
            "last_modified": datetime.datetime.now(datetime.timezone.utc),
        },
    )
