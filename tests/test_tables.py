"""Generated tables: every marked table in the repository's documents is what its generator gives from
the committed result files, so a number cannot drift from its evidence."""

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from amicl.cli import amicl
from amicl.tables import TABLES, documents, render, stale

ROOT = Path(__file__).resolve().parents[1]


def test_every_generated_table_in_the_repository_is_up_to_date():
    assert sum("<!-- table " in p.read_text() for p in documents(ROOT)) >= 3  # the mechanism is in use
    assert stale(ROOT) == [], "run `amicl tables` and commit the documents"


def test_a_changed_result_makes_its_table_stale_and_the_command_rewrites_it(tmp_path):
    run = tmp_path / "results" / "streams" / "r"
    run.mkdir(parents=True)
    shutil.copy(ROOT / "results/streams/none_V_24seeds/compare.csv", run / "compare.csv")
    doc = tmp_path / "README.md"
    doc.write_text("before\n<!-- table streams-savings results/streams/r ic -->\nold\n<!-- /table -->\nafter\n")
    assert stale(tmp_path) == [doc]
    r = CliRunner().invoke(amicl, ["tables", "--check", "--root", str(tmp_path)])
    assert r.exit_code == 1 and "out of date: README.md" in r.stderr
    assert CliRunner().invoke(amicl, ["tables", "--root", str(tmp_path)]).exit_code == 0
    text = doc.read_text()
    assert text.startswith("before\n") and text.endswith("after\n") and "| V | 24/24 |" in text and "old" not in text
    assert stale(tmp_path) == []
    (run / "compare.csv").write_text((run / "compare.csv").read_text().replace("25500.0", "25000.0"))
    assert stale(tmp_path) == [doc]


def test_a_bad_marker_is_one_line_naming_it():
    with pytest.raises(ValueError, match="unknown table 'nope'"):
        render("<!-- table nope x -->\n<!-- /table -->", ROOT)
    with pytest.raises(ValueError, match="streams-savings results/none"):
        render("<!-- table streams-savings results/none ic -->\n<!-- /table -->", ROOT)


@pytest.mark.parametrize("name", list(TABLES))
def test_every_generator_is_importable_and_documented(name):
    assert callable(TABLES[name]) and TABLES[name].__doc__


def test_the_results_index_leaves_out_a_folder_being_written(tmp_path):
    from amicl.common.io import write_json
    from amicl.common.runs import claim_run_folder
    from amicl.tables import results_index

    for name in ("done", "busy", "busy/groups/g0"):  # a grouped run writes its groups inside its own folder
        write_json(tmp_path / "results" / name / "config.json", {"kind": "lm", "argv": ["amicl", "lm", "train"]})
    with claim_run_folder(tmp_path / "results" / "busy", "lm", resume=True):
        rows = results_index(tmp_path)
    assert [r.split(" | ")[0] for r in rows[2:]] == ["| results/done"]
    assert len(results_index(tmp_path)) == 5  # settled: listed again, with its group


def test_the_results_index_names_every_command_of_a_resumed_run(tmp_path):
    from amicl.common.io import write_json
    from amicl.tables import results_index

    train = ["amicl", "lm", "train", "--steps"]
    sessions = [{"argv": [*train, "2000", "--out", "x"], "git_sha": "aaaa"},
                {"argv": [*train, "4000", "--out", "x", "--resume"], "git_sha": "bbbb"},
                {"argv": [*train, "4000", "--out", "x", "--resume"], "git_sha": "cccc"}]  # fmt: skip
    write_json(tmp_path / "results" / "r" / "config.json", {"kind": "lm", **sessions[-1], "sessions": sessions})
    row = results_index(tmp_path)[2]
    assert "`amicl lm train --steps 2000 --out x`; then `amicl lm train --steps 4000 --out x` (3 sessions)" in row
    assert row.endswith("| cccc |")
    # one process listed again after each commit made while it trained (older releases): one session, and
    # the commit it started from
    started = "2026-12-04T14:55:49+0000"
    sessions = [{"argv": [*train, "4000", "--out", "x"], "git_sha": sha, "started": started} for sha in ("dd", "ee")]
    write_json(tmp_path / "results" / "r" / "config.json", {"kind": "lm", **sessions[-1], "sessions": sessions})
    row = results_index(tmp_path)[2]
    assert "sessions" not in row and row.endswith("| dd |")


def test_paired_onsets_and_probes_are_hand_computable(tmp_path):
    """Two seeds, hand-written: arm minus base per seed, median [min, max], and the tallies."""
    from transformers_mini.toy.tables import onset_pairs, probes_at

    run = tmp_path / "r"
    run.mkdir()
    head = "arm,seed,complete,takeoff,start_prev_token\n"
    rows = ["none,0,True,1000,800", "none,1,True,2000,900", "V,0,True,500,800", "V,1,True,1500,1000"]
    (run / "mechanisms.csv").write_text(head + "\n".join(rows) + "\n")
    table = onset_pairs(tmp_path, "r", "takeoff,start_prev_token")
    # take-off: -500 and -500 (earlier on both); binding start: 0 and +100 (tied on one, later on one)
    assert table[2] == "| V | -500 [-500, -500]; 2 / 0 / 0 | +50 [0, +100]; 0 / 1 / 1 |"
    probes = "step,arm,seed,prev_token\n10,none,0,0.2\n10,none,1,0.3\n10,V,0,0.5\n10,V,1,0.2\n20,V,0,9\n"
    (run / "probes.csv").write_text(probes)
    assert probes_at(tmp_path, "r", "10", "prev_token")[2] == "| V | +0.100 [-0.100, +0.300]; 1/2 |"


def test_in_a_git_checkout_the_results_index_lists_only_committed_runs(tmp_path):
    """A run folder that exists only on this disk (stopped, never committed) is not in the index a fresh
    clone would generate, so it is left out here too; once staged it is listed."""
    import subprocess

    from amicl.common.io import write_json
    from amicl.tables import results_index

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    for name in ("kept", "local"):
        write_json(tmp_path / "results" / name / "config.json", {"kind": "lm", "argv": ["amicl", "lm", "train"]})
    subprocess.run(["git", "-C", str(tmp_path), "add", "results/kept/config.json"], check=True)
    assert [r.split(" | ")[0] for r in results_index(tmp_path)[2:]] == ["| results/kept"]
    subprocess.run(["git", "-C", str(tmp_path), "add", "results/local/config.json"], check=True)
    assert len(results_index(tmp_path)) == 4


def test_interventions_over_seeds_pool_runs_pair_seeds_and_count_seeds_at_their_own_accuracy(tmp_path):
    """Two run folders of one seed each, hand-written: pooled per arm, V minus none paired by seed."""
    from transformers_mini.toy.tables import interventions_over_seeds

    head = "arm,seed,step,intervention,set,accuracy,clean,drop\n"
    for name, seed, (n_clean, n_zero, v_clean, v_zero) in (
        ("a", 0, (0.9, 0.2, 0.95, 0.4)),
        ("b", 1, (0.8, 0.8, 0.9, 0.5)),
    ):
        (tmp_path / name).mkdir()
        grid = '"amicl:a=2,beta=10"'
        rows = [f"none,{seed},10,clean,ic,{n_clean},{n_clean},0", f"none,{seed},10,zero:attn0,ic,{n_zero},{n_clean},0",
                f"V,{seed},10,clean,ic,{v_clean},{v_clean},0", f"V,{seed},10,zero:attn0,ic,{v_zero},{v_clean},0",
                f"none,{seed},10,{grid},ic,1.0,{n_clean},0", f"V,{seed},10,{grid},ic,0.5,{v_clean},0",
                f'none,{seed},10,"amicl:a=1,beta=10",ic,0.1,{n_clean},0']  # fmt: skip
        (tmp_path / name / "interventions.csv").write_text(head + "\n".join(rows) + "\n")
    table = interventions_over_seeds(tmp_path, "ic", "a", "b")
    assert table[0].startswith("| intervention | none (2 seeds) | V (2 seeds) | V - none, paired |")
    assert [r.split(" | ")[0] for r in table[2:]] == ["| clean", "| zero:attn0", "| amicl:a=2,beta=10"]  # no grid
    zero = table[3].split(" | ")
    assert zero[1].startswith("0.500 [") and zero[2].startswith("0.450 [")  # means over the two seeds
    assert zero[3].startswith("-0.050 [")  # (0.4 - 0.2 + 0.5 - 0.8) / 2
    assert zero[4:] == ["none 1/2, V 0/2", "none 1/2, V 0/2 |"]  # seed 1's none is not hurt by the zeroing
    assert table[4].endswith("none 2/2, V 0/2 | none 2/2, V 0/2 |")
    b = tmp_path / "b" / "interventions.csv"
    b.write_text(b.read_text().replace("none,1,10,zero:attn0,ic,0.8,", "none,1,10,zero:attn0,ic,0.76,"))
    zero = interventions_over_seeds(tmp_path, "ic", "a", "b")[3].split(" | ")
    assert zero[4:] == ["none 0/2, V 0/2", "none 1/2, V 0/2 |"]  # 0.76 is below 0.8 but within 0.05


def test_patching_over_seeds_pools_the_runs_into_one_row_per_arm_and_point(tmp_path):
    from transformers_mini.toy.tables import PATCH_ROLES, patching_over_seeds

    head = "arm,seed,point,role,effect\n"
    for name, seed, effect in (("a", 0, 1.0), ("b", 1, 0.5)):
        (tmp_path / name).mkdir()
        rows = [f"V,{seed},blocks.0.hook_resid_post,{role},{effect if role == 'all' else 0.0}" for role in PATCH_ROLES]
        (tmp_path / name / "patching.csv").write_text(head + "\n".join(rows) + "\n")
    table = patching_over_seeds(tmp_path, "trained", "a", "b")
    assert len(table) == 3 and table[2].startswith("| trained | V | blocks.0.hook_resid_post | 0.00 [")
    assert table[2].split(" | ")[-1].startswith("0.75 [")  # the mean of 1.0 and 0.5, over both runs
