"""The package's public face: a fast import, and every public name resolves."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import steam_dinov2

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "pandas", "requests", "PIL", "faiss", "matplotlib", "cleanvision")


def _run(code: str) -> str:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_import_loads_no_heavy_library():
    # A fresh interpreter: this test process has long since imported torch.
    loaded = _run(f"import sys, steam_dinov2; print([m for m in {HEAVY!r} if m in sys.modules])")
    assert loaded == "[]"


def test_first_use_of_a_name_imports_its_stage():
    out = _run(
        "import sys, steam_dinov2; from steam_dinov2 import make_transform; "
        "print(make_transform.__module__, 'torch' in sys.modules)"
    )
    assert out == "steam_dinov2.embedding.preprocess False"


@pytest.mark.parametrize("name", steam_dinov2.__all__)
def test_every_public_name_resolves_and_is_listed(name):
    value = getattr(steam_dinov2, name)
    assert value.__name__ == name
    assert name in dir(steam_dinov2)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'load_modle'"):
        steam_dinov2.load_modle  # noqa: B018
    assert not hasattr(steam_dinov2, "load_modle")
