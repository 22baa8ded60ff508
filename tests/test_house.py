"""The house stays easy to walk: data-folder paths spelled in one module, stages that import only
the layers below them, package imports at the top of each file, and a README that lists every file
the package writes.

These read the source, so they fail the moment a change lets the structure drift.
"""

import ast
import graphlib
import json
import os
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "steam_dinov2"
MODULES = sorted(PACKAGE.rglob("*.py"))
NOTEBOOKS = sorted(ROOT.glob("*.ipynb"))
# Each stage and what it may import (besides itself): data flows one way, down this list.
LOWER = {
    "core": set(),
    "steam": {"core"},
    "collection": {"core"},
    "embedding": {"core"},
    "search": {"core", "embedding"},
    "audit": {"core", "embedding", "search"},
    "evaluation": {"core", "steam", "embedding", "search", "audit"},  # scores what users see
    "lookalikes": {"core", "steam", "embedding", "search", "audit"},
    "views": {
        "core",
        "steam",
        "collection",
        "embedding",
        "search",
        "audit",
        "evaluation",
        "lookalikes",
    },
}
LOWER["browse"] = LOWER["views"] | {"views"}
LOWER["cli"] = LOWER["colab"] = LOWER["browse"] | {"browse"}
LOWER["__main__"] = {"cli"}
LOWER["__init__"] = set(LOWER)  # the facade re-exports every stage, lazily


def _layout_names() -> tuple[set[str], set[str]]:
    """(file names, folder names) that layout.py spells inside the data folder."""
    files, folders = set(), set()
    tree = ast.parse((PACKAGE / "core" / "layout.py").read_text())
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
        if path != PACKAGE / "core" / "layout.py":
            yield str(path.relative_to(PACKAGE)), path.read_text()
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


def _stage(rel: Path) -> str:
    """The stage a module belongs to: its folder, or its own name at the package's top."""
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _package_imports(path: Path, package: Path):
    """``(line, target parts, inside a function)`` of each import of the package's own modules."""
    rel = path.relative_to(package)
    base = list(rel.parts[:-1])
    tree = ast.parse(path.read_text())
    in_function = {
        id(n)
        for f in ast.walk(tree)
        if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        for n in ast.walk(f)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            up = base[: len(base) - (node.level - 1)] if node.level > 1 else base
            heads = [node.module.split(".")] if node.module else [[a.name] for a in node.names]
            for head in heads:
                yield node.lineno, up + head, id(node) in in_function
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = (
                [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            )
            for name in names:
                if name and name.split(".")[0] == package.name:
                    yield node.lineno, name.split(".")[1:], id(node) in in_function


def layer_violations(package: Path) -> list[str]:
    """Every import that points up (or sideways) the stage list, as ``file:line: why``."""
    found = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package)
        stage = _stage(rel)
        if stage not in LOWER:
            found.append(f"{rel}: stage {stage!r} is not in the layer list (tests/test_house.py)")
            continue
        for line, target, _ in _package_imports(path, package):
            to = target[0] if target else "__init__"
            to = to.removesuffix(".py")
            if to != stage and to not in LOWER[stage]:
                allowed = ", ".join(sorted(LOWER[stage])) or "no other stage"
                found.append(f"{rel}:{line}: {stage} imports {to} (it may import: {allowed})")
    return found


def test_each_stage_imports_only_the_stages_below_it():
    assert not layer_violations(PACKAGE), "\n".join(layer_violations(PACKAGE))


def test_layer_check_fails_on_a_planted_upward_import(tmp_path):
    copy = tmp_path / PACKAGE.name
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert layer_violations(copy) == []
    with (copy / "core" / "files.py").open("a") as f:
        f.write("\nfrom ..views.site import export_site  # noqa\n")
    with (copy / "embedding" / "embed.py").open("a") as f:
        f.write("\n\ndef _late():\n    from ..browse import browser  # noqa\n")
    found = layer_violations(copy)
    assert len(found) == 2, found
    assert found[0].startswith(f"core{os.sep}files.py:") and "core imports views" in found[0]
    assert "embedding imports browse (it may import: core)" in found[1]


def test_no_import_cycles_between_modules():
    graph = {}
    for path in MODULES:
        rel = path.relative_to(PACKAGE)
        node = ".".join(rel.with_suffix("").parts)
        graph.setdefault(node, set())
        for _, target, inside in _package_imports(path, PACKAGE):
            for k in range(len(target), 0, -1):  # the longest prefix that is a module
                name = ".".join(target[:k])
                if (PACKAGE / Path(*target[:k])).with_suffix(".py").exists() and name != node:
                    if not inside:
                        graph[node].add(name)
                    break
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming the cycle


def test_package_imports_sit_at_the_top_of_each_module():
    """The first lines of a module say what it depends on; only heavy third-party libraries are
    imported inside functions (so ``import steam_dinov2`` stays fast)."""
    inside = [
        f"{path.relative_to(PACKAGE)}:{line}"
        for path in MODULES
        for line, _, in_function in _package_imports(path, PACKAGE)
        if in_function
    ]
    assert not inside, "move these imports to the top of the file:\n" + "\n".join(inside)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_god_module(path):
    """Size is a smell, not a rule: a module this large holds more than one idea."""
    n_lines = len(path.read_text().splitlines())
    assert n_lines < 800, f"{path.name}: {n_lines} lines; which ideas does it hold?"


def test_notebooks_use_only_the_public_api():
    for path in NOTEBOOKS:
        code = _code_of_notebook(path)
        imports = [
            ast.unparse(n)
            for n in ast.walk(ast.parse(code))
            if isinstance(n, (ast.Import, ast.ImportFrom)) and "steam_dinov2" in ast.unparse(n)
        ]
        assert imports and set(imports) <= {"import steam_dinov2 as sd"}, (path.name, imports)
        assert not re.search(r"\bsd\.[a-z_]+\.", code), f"{path.name} reaches into a submodule"
