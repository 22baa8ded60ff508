"""The house stays easy to walk: data-folder paths spelled in one module, short modules and
functions, and a README that lists every file the package writes.

These read the source, so they fail the moment a change lets the structure drift.
"""

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "steam_dinov2"
MODULES = sorted(PACKAGE.glob("*.py"))
NOTEBOOKS = sorted(ROOT.glob("*.ipynb"))
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 50  # docstring included: one screen


def _layout_names() -> tuple[set[str], set[str]]:
    """(file names, folder names) that layout.py spells inside the data folder."""
    files, folders = set(), set()
    tree = ast.parse((PACKAGE / "layout.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            right = node.right
            if isinstance(right, ast.Constant) and isinstance(right.value, str):
                (files if "." in right.value else folders).add(right.value)
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            value = node.value.value
            if isinstance(value, str) and re.fullmatch(r"\.?[a-z_]+(\.[a-z]+)?", value):
                (files if "." in value else folders).add(value)
    return files, folders


def _code_of_notebook(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    lines = [
        # an IPython magic or shell line becomes `pass` at its indent, so blocks still parse
        re.sub(r"^(\s*)[%!].*", r"\1pass", line)
        for c in cells
        if c["cell_type"] == "code"
        for line in "".join(c["source"]).splitlines()
    ]
    return "\n".join(lines)


def _sources():
    for path in MODULES:
        if path.name != "layout.py":
            yield path.name, path.read_text()
    for path in NOTEBOOKS:
        yield path.name, _code_of_notebook(path)


def _strings(tree: ast.AST):
    """String constants that are not docstrings, with their line."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        is_string = isinstance(node, ast.Constant) and isinstance(node.value, str)
        if is_string and id(node) not in docstrings:
            yield node.lineno, node.value


def test_layout_names_what_it_owns():
    files, folders = _layout_names()
    # The scan below is only as good as this list: it must see the names layout.py builds.
    assert {"manifest.parquet", "neighbors.json", "exclusions.json", "meta.json"} <= files
    assert {"banners", "embeddings", "maps", "evaluation"} <= folders


def test_only_layout_spells_a_data_folder_file_name():
    files, folders = _layout_names()
    leaks = []
    for name, source in _sources():
        tree = ast.parse(source)
        for line, value in _strings(tree):
            if value in files or any(value.startswith(f"{d}/") for d in folders):
                leaks.append(f"{name}:{line}: {value!r}")
        for node in ast.walk(tree):  # DATA / "banners" built by hand
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
                right = node.right
                if isinstance(right, ast.Constant) and right.value in folders:
                    leaks.append(f"{name}:{node.lineno}: / {right.value!r}")
    assert not leaks, "use a layout.py helper instead:\n" + "\n".join(leaks)


def test_readme_lists_every_file_layout_names():
    block = re.search(r"## The data folder\n+```\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block, "README.md lost its data-folder section"
    files, folders = _layout_names()
    missing = sorted(n for n in files | folders if n not in block.group(1))
    assert not missing, f"README.md's data-folder section does not list: {missing}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_module_and_its_functions_read_in_a_screen(path):
    source = path.read_text()
    n_lines = len(source.splitlines())
    assert n_lines <= MAX_MODULE_LINES, (
        f"{path.name} has {n_lines} lines: split a responsibility out"
    )
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{path.name}: longer than one screen: {', '.join(long)}"
