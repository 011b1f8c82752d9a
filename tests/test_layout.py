"""The house's import arrows (docs/design.md): every room may import amicl.common; amicl.common imports no
room and never torch at module level; the rooms' other arrows are listed in ALLOWED; no room imports
another room's cli or figures module or a private name; the front (amicl.cli, amicl.report) imports only
amicl.common, and reaches the rooms lazily by import path. No file cites a path outside the repository."""

import ast
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("amicl", "transformers_mini", "evolution")

# room -> the rooms it may import besides amicl.common and itself (most specific prefix wins)
ROOMS = ("amicl.common", "amicl.task", "amicl.memory", "transformers_mini.core", "transformers_mini.toy",
         "transformers_mini.lm", "evolution", "amicl", "transformers_mini")  # fmt: skip
ALLOWED = {
    "amicl.common": set(),
    "amicl.task": set(),
    "amicl.memory": {"amicl.task"},
    "transformers_mini.core": set(),
    "transformers_mini.toy": {"transformers_mini.core", "amicl.task", "amicl.memory"},
    "transformers_mini.lm": {"transformers_mini.core"},
    "evolution": {"transformers_mini.core", "amicl.task"},
    "amicl": set(),  # the front: cli.py, report.py
    "transformers_mini": set(),  # the package's own __init__
}


def imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return out


def room_of(module: str) -> str | None:
    for room in ROOMS:
        if module == room or module.startswith(room + "."):
            return room
    return "transformers_mini" if module == "transformers_mini" else None


def module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


SOURCES = sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_imports_follow_the_house_plan(path):
    here = room_of(module_of(path))
    assert here in ALLOWED, f"{path}: a module outside every room"
    for module in imports(path):
        there = room_of(module)
        if there is None or there == here or there == "amicl.common":
            continue
        assert there in ALLOWED[here], f"{path.relative_to(ROOT)} imports {module}: {here} may not import {there}"
        inside = module[len(there) + 1 :].split(".") if module != there else []
        assert not any(part in ("cli", "figures") or part.startswith("_") for part in inside), (
            f"{path.relative_to(ROOT)} imports another room's cli, figures or private name: {module}"
        )
    if here == "amicl.common":  # torch only inside the functions that need it
        top_level = [n for n in ast.parse(path.read_text()).body if isinstance(n, (ast.Import, ast.ImportFrom))]
        names = [a.name for n in top_level if isinstance(n, ast.Import) for a in n.names]
        names += [n.module for n in top_level if isinstance(n, ast.ImportFrom) and n.module]
        assert not any(m.split(".")[0] == "torch" for m in names), f"{path.name} imports torch at top level"


def test_every_package_folder_is_a_room():
    for path in SOURCES:
        assert room_of(module_of(path)) in ALLOWED, path


def test_nothing_cites_a_path_outside_the_repository():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    texts = [f for f in files if f.endswith((".py", ".md", ".cfg", ".toml")) and f != "tests/test_layout.py"]
    for f in texts:
        text = (ROOT / f).read_text(errors="replace")
        for bad in ("../shared", "shared/reference", "shared/DESIGN"):
            assert bad not in text, f"{f} cites {bad}, which is not in the repository"


def test_no_function_is_longer_than_80_lines():
    long = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1})")
    assert not long, long
