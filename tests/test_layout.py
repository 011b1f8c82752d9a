"""The house's import arrows (DESIGN.md): every room may import amicl.common; across rooms only amicl.task
and amicl.memory (transformers_mini, evolution) and transformers_mini (evolution); no room imports another
room's cli or figures module or a private name; amicl.common imports no room and never torch."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("amicl", "transformers_mini", "evolution")


def imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return out


def room_of(module: str) -> str | None:
    top = module.split(".")[0]
    if module.startswith("amicl.common"):
        return "common"
    return top if top in ROOMS else None


ALLOWED = {"transformers_mini": {"common", "amicl.task", "amicl.memory"},
           "evolution": {"common", "amicl.task", "transformers_mini"}}  # fmt: skip


@pytest.mark.parametrize("path", sorted(p for r in ROOMS for p in (ROOT / r).rglob("*.py")), ids=lambda p: p.name)
def test_imports_follow_the_house_plan(path):
    here = "common" if "common" in path.parts else path.relative_to(ROOT).parts[0]
    for module in imports(path):
        there = room_of(module)
        if there is None or there == here:
            continue
        if here == "common":
            pytest.fail(f"{path.name}: amicl.common imports the room module {module}")
        if here == "amicl":
            assert there == "common" or path.name == "cli.py", f"{path.name} imports {module}"
            continue
        if there == "common":
            continue
        top = ".".join(module.split(".")[:2])
        ok = there in ALLOWED[here] or top in ALLOWED[here]
        assert ok, f"{path.relative_to(ROOT)} imports {module}, outside the allowed arrows"
        assert not any(part in ("cli", "figures") or part.startswith("_") for part in module.split(".")[1:]), (
            f"{path.relative_to(ROOT)} imports another room's cli, figures or private name: {module}"
        )
    if here == "common":  # torch only inside the functions that need it
        top_level = [n for n in ast.parse(path.read_text()).body if isinstance(n, (ast.Import, ast.ImportFrom))]
        names = [a.name for n in top_level if isinstance(n, ast.Import) for a in n.names]
        names += [n.module for n in top_level if isinstance(n, ast.ImportFrom) and n.module]
        assert not any(m.split(".")[0] == "torch" for m in names), f"{path.name} imports torch at top level"
