import subprocess
import sys

import pytest
from click.testing import CliRunner

from amicl.cli import amicl


def run(*args):
    return CliRunner().invoke(amicl, list(args))


def test_help_imports_neither_torch_nor_numba():
    code = (
        "import sys; from click.testing import CliRunner; from amicl.cli import amicl; "
        "r = CliRunner().invoke(amicl, ['--help']); assert r.exit_code == 0, r.output; "
        "print(sorted(m for m in ('torch', 'numba', 'scipy', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("group", [["memory"], ["figures"], ["reproduce"], ["memory", "sweep"], ["figures", "amicl"]])
def test_group_help(group):
    r = run(*group, "--help")
    assert r.exit_code == 0 and "Usage" in r.output


@pytest.mark.parametrize(
    "args, needle",
    [
        (["memory", "run", "--a", "-1"], "a must be"),
        (["memory", "run", "--beta", "0", "--separation", "softmax"], "beta"),
        (["memory", "run", "--T", "7"], "T must be even"),
        (["memory", "run", "--D", "0"], "D must be"),
        (["memory", "run", "--K", "1"], "K must be"),
        (["memory", "run", "--epsilon", "-0.5"], "epsilon"),
        (["memory", "run", "--trials", "0"], "--trials"),
        (["memory", "run", "--seed", "-3"], "--seed"),
        (["memory", "run", "--workers", "0"], "--workers"),
        (["memory", "run", "--similarity", "cosine"], "--similarity"),
        (["memory", "run", "--max-iter", "-2"], "max_iter"),
        (["memory", "run", "--power", "0.1", "--separation", "power"], "n must be"),
        (["memory", "run", "--separation", "power", "--similarity", "manhattan"], "power"),
        (["memory", "run", "--task", "reddy", "--T", "20"], "--T does not apply"),
        (["memory", "run", "--task", "reddy", "--B", "3"], "B must divide N"),
        (["memory", "run", "--task", "reddy", "--L", "30"], "L must divide K"),
        (["memory", "run", "--task", "reddy", "--p_B", "2"], "p_B"),
        (["memory", "run", "--task", "reddy", "--B", "0", "--p_B", "0", "--p_C", "0"], "test_set"),
        (["memory", "run", "--a", "abc"], "--a"),
        (["memory", "sweep", "--out", "x", "--grid", "zeta=1"], "cannot sweep"),
        (["memory", "sweep", "--out", "x", "--grid", "a=1:2"], "bad values"),
        (["memory", "sweep", "--grid", "a=1"], "--out"),
        (["memory", "matrices", "--out", "x", "--T", "5"], "T must be even"),
        (["figures", "amicl", "/nonexistent"], "RESULTS"),
        (["reproduce", "amicl", "--trials", "0"], "--trials"),
        (["nope"], "No such command"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(args, needle):
    r = run(*args)
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and needle in lines[0], r.output
    assert "Traceback" not in r.output


def test_memory_run_and_sweep_then_figures(tmp_path):
    r = run("memory", "run", "--a", "2", "--K", "50", "--D", "30", "--trials", "200", "--out", str(tmp_path / "run"))
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("accuracy ") and float(r.stdout.split()[1]) > 0.9  # D=30: ~0.97
    r = run(
        "memory",
        "sweep",
        "--K",
        "50",
        "--D",
        "30",
        "--trials",
        "100",
        "--grid",
        "a=0:2:3",
        "--grid",
        "similarity=dot,pearson",
        "--out",
        str(tmp_path / "sweep"),
    )
    assert r.exit_code == 0, r.output
    assert len(r.stdout.strip().splitlines()) == 6
    r = run(
        "memory",
        "sweep",
        "--task",
        "reddy",
        "--D",
        "40",
        "--trials",
        "100",
        "--grid",
        "B=1,2",
        "--grid",
        "a=0:2:8",
        "--out",
        str(tmp_path / "phase"),
    )
    assert r.exit_code == 0, r.output
    r = run("memory", "matrices", "--T", "10", "--out", str(tmp_path / "mats"))
    assert r.exit_code == 0, r.output
    r = run("figures", "amicl", str(tmp_path), "--format", "png")
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert names == ["mats.png", "phase.png", "sweep.png"]


def test_reproduce_small_resumes(tmp_path):
    args = ["reproduce", "amicl", "--out", str(tmp_path), "--trials", "40", "--only", "a_K512", "--only", "D"]
    r = run(*args)
    assert r.exit_code == 0, r.output
    root = tmp_path / "amicl"
    assert "| K=512, a=2 |" in r.stdout and (root / "comparison.csv").exists()
    assert (root / "figures" / "a_K512.png").exists() and (root / "figures" / "matrices.png").exists()
    stamp = (root / "a_K512" / "results.npz").stat().st_mtime_ns
    r = run(*args)  # complete folders are kept, not recomputed
    assert r.exit_code == 0 and (root / "a_K512" / "results.npz").stat().st_mtime_ns == stamp


def _walk(group, path=()):
    """Every (path, command) below ``group``, loading lazily registered commands as a user's call would."""
    import click

    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        yield (*path, name), cmd
        if isinstance(cmd, click.Group):
            yield from _walk(cmd, (*path, name))


def test_every_command_lists_the_help_of_its_own_docstring():
    """One source for help: a group's listing shows each subcommand's own short help, taken from its docstring."""
    commands = list(_walk(amicl))
    assert len(commands) >= 15
    for path, cmd in commands:
        assert cmd.help and cmd.help.strip(), f"amicl {' '.join(path)} has no docstring"
        listing = run(*path[:-1], "--help").output
        first_words = " ".join(cmd.get_short_help_str(limit=200).split()[:4])
        assert first_words in " ".join(listing.split()), (path, first_words)


TORCH_FREE = [
    ["--help"],
    ["figures", "--help"],
    ["namm", "--help"],
    ["transformer", "--help"],
    ["namm", "evolve", "--help"],
    ["transformer", "compare", "--help"],
    ["namm", "table", "results/namm/eval16/namm", "results/namm/eval16/match_h2o"],
    [
        "figures",
        "namm",
        "results/namm/eval16/namm",
        "results/namm/eval16/match_h2o",
        "--out",
        "{tmp}",
        "--format",
        "png",
    ],
]


@pytest.mark.parametrize("args", TORCH_FREE, ids=" ".join)
def test_help_tables_and_figures_never_import_torch(args, tmp_path):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    args = [a.format(tmp=tmp_path) for a in args]
    code = (
        "import sys; from click.testing import CliRunner; from amicl.cli import amicl; "
        f"r = CliRunner().invoke(amicl, {args!r}); assert r.exit_code == 0, r.output; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"
