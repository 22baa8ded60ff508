"""Issue 17: the pixel limit bounds what a resize produces, not only what it reads.

A 1x20000 PNG is 20,000 pixels (far under the input limit) but a resize of its shorter side to 256
would make it 256x5,120,000 (3.9 GB of RGB; 6 GB RSS in `import-folder` before). Here it goes
through import-folder, embed and the browser's upload in a fresh process, and each of them skips
it with the reason while the process stays far under the memory it would have taken.
"""

import json
import os
import subprocess
import sys

from conftest import make_banner
from PIL import Image

LIMIT_MB = 1500  # a fresh process with torch and a ViT-S/14 stays around a third of this

_SCRIPT = """
import io, json, resource, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from conftest import upload_to_browser
from steam_dinov2 import Browser, embed_folder, import_folder, load_model

def peak_mb():
    # This process's own peak (VmHWM): ru_maxrss keeps the peak of the process it was forked from
    # across exec (Linux), so under a large pytest it measured pytest, not this script.
    try:
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) / 1024 for l in f if l.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


src = Path(sys.argv[1])
model = load_model("dinov2_vits14", pretrained=False, device="cpu")
folder = import_folder(src, src.parent / "data", progress=False)
emb = embed_folder(src, src.parent / "embedded", model=model, num_workers=0, progress=False)
browser = Browser(src.parent / "embedded", k=1)
upload_to_browser(browser, "strip.png", (src / "20.png").read_bytes())
print(json.dumps({
    "import": folder.skipped,
    "imported": len(folder.imported),
    "embed": {str(k): v for k, v in emb.errors.items()},
    "embedded": [str(i) for i in emb.ids],
    "upload": browser.status.value,
    "rss_mb": peak_mb(),
}))
"""


def test_a_long_strip_is_skipped_everywhere_with_bounded_memory(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    make_banner(1).save(src / "10.png")
    Image.new("L", (1, 20000), 128).save(src / "20.png")  # 70 bytes of PNG
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), TQDM_DISABLE="1")
    tests = os.path.dirname(__file__)
    run = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(src), tests],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    got = json.loads(run.stdout.strip().splitlines()[-1])
    why = "image too elongated (1x20000 pixels would become 256x5120000 when resized, limit 40,000,000)"
    assert got["import"] == {"20.png": f"not a decodable image: {why}"} and got["imported"] == 1
    assert got["embedded"] == ["10"] and got["embed"] == {"20": f"ValueError: {why}"}
    assert f"could not read the upload strip.png: not a decodable image: {why}" in got["upload"]
    assert got["rss_mb"] < LIMIT_MB, got["rss_mb"]
    print(f"peak RSS {got['rss_mb']:.0f} MB")
