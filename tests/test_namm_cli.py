"""The whole NAMM command path at a tiny size: train-base, evolve, eval of every policy, figures."""

import csv
import json

import pytest
from click.testing import CliRunner
from tiny import TINY_BASE

from amicl.cli import amicl
from amicl.common.io import read_csv

SMALL = ["--threads", "1"]


def run(*args):
    return CliRunner().invoke(amicl, [str(a) for a in args])


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    out = tmp_path_factory.mktemp("base")
    r = run(
        "namm",
        "train-base",
        "--layers",
        2,
        "--d-model",
        32,
        "--heads",
        4,
        "--kv-heads",
        2,
        "--steps",
        2,
        "--batch",
        2,
        "--min-context",
        64,
        "--max-context",
        128,
        "--queries",
        1,
        "--stream",
        "V",  # the values stream, so that every policy below is run on a residual-stream base (issue 14)
        *SMALL,
        "--out",
        out,
    )
    assert r.exit_code == 0, r.output
    assert json.loads((out / "config.json").read_text())["base"]["model"]["stream"]["kind"] == "V"
    return out


def test_evolve_eval_and_figures(base, tmp_path):
    evo = tmp_path / "evo"
    common = ["--context", 96, "--n-up", 32, "--metric", "prob"]
    r = run(
        "namm",
        "evolve",
        "--base",
        base,
        "--stages",
        "kv_retrieval;kv_retrieval,needle",
        "--generations",
        "1,1",
        "--popsize",
        3,
        "--prompts",
        2,
        "--dev-prompts",
        2,
        "--dev-every",
        1,
        *common,
        *SMALL,
        "--out",
        evo,
    )
    assert r.exit_code == 0, r.output
    assert "best dev mean fitness" in r.stdout
    r = run(
        "namm",
        "evolve",
        "--base",
        base,
        "--stages",
        "kv_retrieval;kv_retrieval,needle",
        "--generations",
        "1,2",
        "--popsize",
        3,
        "--prompts",
        2,
        "--dev-prompts",
        2,
        "--dev-every",
        1,
        *common,
        *SMALL,
        "--out",
        evo,
    )
    assert r.exit_code == 2 and "--resume" in r.output
    ev = tmp_path / "eval_namm"
    r = run(
        "namm",
        "eval",
        "--base",
        base,
        "--policy",
        "namm",
        "--namm",
        evo,
        "--tasks",
        "kv_retrieval,needle",
        "--prompts",
        2,
        *common,
        *SMALL,
        "--out",
        ev,
    )
    assert r.exit_code == 0, r.output
    layers = json.loads((ev / "eval.json").read_text())["layer_fraction"]["None"]
    assert len(layers) == 2
    for policy in ("full", "recency", "h2o", "l2", "random"):
        budget = [] if policy == "full" else ["--match", ev]
        r = run(
            "namm",
            "eval",
            "--base",
            base,
            "--policy",
            policy,
            *budget,
            "--tasks",
            "kv_retrieval,needle",
            "--prompts",
            2,
            *common,
            *SMALL,
            "--out",
            tmp_path / f"eval_{policy}",
        )
        assert r.exit_code == 0, r.output
    r = run(
        "namm",
        "eval",
        "--base",
        base,
        "--policy",
        "h2o",
        "--budget-fraction",
        "0.25,0.5",
        "--tasks",
        "needle",
        "--prompts",
        2,
        *common,
        *SMALL,
        "--out",
        tmp_path / "eval_sweep",
    )
    assert r.exit_code == 0 and r.stdout.count("needle") == 2, r.output
    r = run(
        "namm",
        "table",
        *[tmp_path / f"eval_{p}" for p in ("namm", "recency", "h2o", "l2", "random")],
        "--out",
        tmp_path / "table",
    )
    assert r.exit_code == 0, r.output
    rows = {x["policy"]: x for x in csv.DictReader(open(tmp_path / "table" / "table.csv"))}
    namm_eval = {x["task"]: x for x in csv.DictReader(open(ev / "eval.csv"))}
    assert float(rows["namm"]["needle"]) == pytest.approx(float(namm_eval["needle"]["normalised"]))
    assert rows["namm"]["namm_minus_this_trained"] == "" and rows["h2o"]["namm_minus_this_trained"] != ""
    assert "| namm | own (score < 0) |" in r.output
    r = run(
        "namm",
        "eval",
        "--base",
        base,
        "--policy",
        "recency",
        "--budget-fraction",
        "0.5",
        "--tasks",
        "needle",
        "--prompts",
        3,
        *common,
        *SMALL,
        "--out",
        tmp_path / "eval_3",
    )
    assert r.exit_code == 0, r.output
    r = run("namm", "table", ev, tmp_path / "eval_3", "--out", tmp_path / "table_unpaired")
    assert r.exit_code == 0, r.output  # different prompt counts: CIs per eval, no paired differences
    assert "| recency |" in r.output and "minus" not in r.output
    r = run(
        "figures",
        "namm",
        evo,
        *[tmp_path / f"eval_{p}" for p in ("namm", "full", "h2o", "l2", "sweep")],
        "--out",
        tmp_path / "fig",
        "--format",
        "png",
    )
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in (tmp_path / "fig").iterdir())
    assert names == ["evolution_evo.png", "example_spectrogram.png", "layers_and_ages.png", "score_vs_cache.png",
                     "score_vs_compression.png"]  # fmt: skip


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--policy", "h2o"], "needs --budget"),
        (["--policy", "namm"], "--namm"),
        (["--policy", "l2", "--budget-fraction", "1.5"], "budget-fraction"),
        (["--policy", "l2", "--budget", "8", "--budget-fraction", "0.5"], "only one"),
        (["--policy", "lru", "--budget", "8"], "--policy"),
        (["--policy", "recency", "--budget", "8", "--n-up", "40"], "multiple of 16"),
    ],
)
def test_eval_bad_input(base, tmp_path, args, needle):
    r = run(
        "namm",
        "eval",
        "--base",
        base,
        *args,
        "--tasks",
        "needle",
        "--prompts",
        1,
        "--context",
        64,
        *SMALL,
        "--out",
        tmp_path,
    )
    assert r.exit_code == 2, r.output
    assert needle in r.output and len(r.output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--generations", "1,x"], "--generations"),
        (["--n-up", "24"], "multiple of 16"),
        (["--popsize", "1"], "popsize"),
        (["--stages", "copy", "--generations", "5"], "task"),
        (["--stages", "needle"], "one generation count per stage"),
    ],
)
def test_evolve_bad_input(base, tmp_path, args, needle):
    r = run("namm", "evolve", "--base", base, *args, *SMALL, "--out", tmp_path)
    assert r.exit_code == 2, r.output
    assert needle in r.output


def test_train_base_task_subset_and_plain_inputs(tmp_path):
    args = ["--tasks", "kv_retrieval, needle", "--no-token-shift", "--eval-every", 1]
    r = run("namm", "train-base", *TINY_BASE, *args, "--out", tmp_path)
    assert r.exit_code == 0, r.output
    base = json.loads((tmp_path / "config.json").read_text())["base"]
    assert base["tasks"] == ["kv_retrieval", "needle"] and base["model"]["token_shift"] is False
    assert "kv_retrieval@64=" in r.stdout and "passage" not in r.stdout


def test_evolve_cli_defaults_are_the_config_defaults(base, tmp_path, monkeypatch):
    """With no options the CLI builds exactly EvolveConfig(): the config owns every default."""
    import evolution.evolve as ev

    class Built(Exception):
        pass

    def capture(cfg, model, executor=None):
        raise Built(cfg)

    monkeypatch.setattr(ev, "Evolution", capture)
    r = run("namm", "evolve", "--base", base, "--out", tmp_path / "evo")
    assert isinstance(r.exception, Built), r.output
    assert r.exception.args[0] == ev.EvolveConfig()
    r = run("namm", "evolve", "--base", base, "--noise-handling", "--full-cma", "--out", tmp_path / "evo2")
    assert r.exception.args[0] == ev.EvolveConfig(noise_handling=True, separable=False)


def test_bf16_autocast_trains_the_base_on_the_cpu_too(tmp_path):
    from tiny import TINY_BASE

    r = run("namm", "train-base", *TINY_BASE, "--precision", "bf16", "--out", tmp_path / "b")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "b" / "config.json").read_text())["base"]["precision"] == "bf16"
    rows = list(csv.DictReader(open(tmp_path / "b" / "history.csv")))
    assert 0 < float(rows[-1]["train_loss"]) < 10


def fake_eval(folder, policy, budget, scores, full, fraction):
    """A namm-eval folder by hand: per task, the per-prompt scores and full-cache scores."""
    from amicl.common.io import write_csv, write_json

    folder.mkdir(parents=True)
    write_json(folder / "config.json", {"kind": "namm-eval", "eval": {"policy": policy}})
    write_csv(folder / "eval.csv", [{"budget": budget, "task": t, "cache_fraction": fraction} for t in scores])
    rows = [
        {"budget": budget, "task": t, "prompt": i, "score": s, "full_score": f}
        for t in scores
        for i, (s, f) in enumerate(zip(scores[t], full[t]))
    ]
    write_csv(folder / "prompt_scores.csv", rows)
    return folder


def test_compare_bases_is_the_paired_difference_of_normalised_scores(tmp_path):
    from evolution.table import base_difference

    full = {"kv_retrieval": [1, 1, 1, 1], "needle": [1, 1, 0, 1]}
    a = fake_eval(tmp_path / "a", "h2o", "64", {"kv_retrieval": [1, 0, 1, 0], "needle": [1, 1, 0, 0]}, full, 0.25)
    b = fake_eval(tmp_path / "b", "h2o", "64", {"kv_retrieval": [1, 1, 1, 0], "needle": [1, 1, 0, 1]}, full, 0.25)
    other = fake_eval(tmp_path / "c", "tova", "64", full, full, 0.25)  # on base A only: not compared
    (row,) = base_difference([a, other], [b], trained={"kv_retrieval"}, n_boot=500)
    assert row["a_trained"][0] == pytest.approx(0.5) and row["b_trained"][0] == pytest.approx(0.75)
    assert row["b_minus_a_trained"][0] == pytest.approx(0.25)
    assert row["b_minus_a_held_out"][0] == pytest.approx(1.0 - 2 / 3)
    lo, hi = row["b_minus_a_trained"][1:]
    assert 0 <= lo <= 0.25 <= hi  # B never scores below A on a prompt: no resample can make B - A negative
    r = run("namm", "compare-bases", a, "--other", b, "--names", "none,V", "--out", tmp_path / "t")
    assert r.exit_code == 0 and "V - none, trained" in r.stdout and (tmp_path / "t" / "bases.csv").exists()
    with pytest.raises(ValueError, match="share no"):
        base_difference([other], [b], trained={"kv_retrieval"})


def test_score_vs_cache_keeps_the_namms_of_several_evolutions_apart(tmp_path):
    """Two NAMM evals on one figure are two labelled points, not one averaged point."""
    import matplotlib

    matplotlib.use("Agg")
    from evolution.figures import plot_score_vs_cache

    header = "policy,budget,task,score,full_score,normalised,cache_fraction,prompts,context\n"
    for name, frac, score in (("namm_a", 0.2, 0.5), ("namm_b", 0.4, 0.9)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "eval.csv").write_text(
            header + "".join(f"namm,None,{t},{score},1,{score},{frac},4,64\n" for t in ("kv_retrieval", "needle"))
        )
    (tmp_path / "h2o").mkdir()
    (tmp_path / "h2o" / "eval.csv").write_text(
        header + "".join(f"h2o,{b},{t},0.7,1,0.7,{b / 64},4,64\n" for b in (16, 32) for t in ("kv_retrieval", "needle"))
    )
    evals = [tmp_path / n for n in ("namm_a", "namm_b", "h2o")]
    fig = plot_score_vs_cache(evals, {"kv_retrieval"}, {"namm": "C0", "h2o": "C1"})
    trained = fig.axes[0]
    labels = trained.get_legend_handles_labels()[1]
    assert labels == ["h2o, same budget per layer", "NAMM namm_a (its own budget)", "NAMM namm_b (its own budget)"]
    points = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in trained.lines[:3]}
    assert points["NAMM namm_a (its own budget)"] == ([0.2], [0.5])
    assert points["NAMM namm_b (its own budget)"] == ([0.4], [0.9])
    # folders of the same name (run_x/namm, run_y/namm) are told apart by their parents
    for src, run in (("namm_a", "run_x"), ("namm_b", "run_y")):
        (tmp_path / run).mkdir()
        (tmp_path / src).rename(tmp_path / run / "namm")
    fig = plot_score_vs_cache(
        [tmp_path / "run_x" / "namm", tmp_path / "run_y" / "namm"], {"kv_retrieval"}, {"namm": "C0"}
    )
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert labels == ["NAMM run_x/namm (its own budget)", "NAMM run_y/namm (its own budget)"]
    # against the compression ratio: the same points at cache / kept, on a log2 axis labelled 2:1 ... 32:1
    fig = plot_score_vs_cache(evals[2:], {"kv_retrieval"}, {"h2o": "C1"}, compression=True)
    (line,) = fig.axes[0].lines[:1]
    assert list(line.get_xdata()) == [2.0, 4.0] and fig.axes[0].get_xscale() == "log"
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()][:2] == ["2:1", "4:1"]


def test_a_budget_mode_namm_is_evaluated_at_its_budget(base, tmp_path):
    common = ["--context", 96, "--n-up", 32, "--metric", "prob", *SMALL]
    evolve = ["--stages", "kv_retrieval", "--generations", 1, "--popsize", 3, "--prompts", 2, "--dev-prompts", 2]
    r = run("namm", "evolve", "--base", base, *evolve, "--budget-fraction", 0.25, *common, "--out", tmp_path / "evo")
    assert r.exit_code == 0, r.output
    ev = ["namm", "eval", "--base", base, "--policy", "namm", "--namm", tmp_path / "evo", "--tasks", "kv_retrieval"]
    r = run(*ev, "--prompts", 2, *common, "--out", tmp_path / "ev")
    assert r.exit_code == 0 and "keep 0.25 of the context: 24 tokens per layer" in r.stderr, r.output
    rows = read_csv(tmp_path / "ev" / "eval.csv")
    assert {row["budget"] for row in rows} == {"24"}
    assert all(float(row["cache_fraction"]) == pytest.approx(0.25, abs=1 / 96) for row in rows)
    bad = run("namm", "evolve", "--base", base, *evolve, "--budget-fraction", 2, *common, "--out", tmp_path / "b")
    assert bad.exit_code == 2 and "budget_fraction" in bad.stderr


def test_evolutions_table_averages_evolutions_and_crosses_the_bootstrap(tmp_path):
    """Three evolutions at one budget against KeyDiff, the oracle and Recency on the same 4 prompts per
    task, by hand: the mean over evolutions, the margins, the oracle share and the verdict."""
    from evolution.table import evolutions_lines, variants_lines

    full = {"kv_retrieval": [1, 1, 1, 1], "needle": [1, 1, 1, 1]}
    needle = ([1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0])  # 1.0, 0.5, 0.75: mean 0.75
    for i, n in enumerate(needle):
        fake_eval(tmp_path / f"e/namm_s{i}", "namm", "128", {"kv_retrieval": [1, 1, 1, 1], "needle": n}, full, 0.125)
    fake_eval(tmp_path / "e/keydiff", "keydiff", "128", {"kv_retrieval": [1, 1, 1, 1], "needle": [1, 0, 1, 0]}, full,
              0.125)  # fmt: skip
    fake_eval(tmp_path / "e/oracle", "oracle", "128", full, full, 0.125)
    fake_eval(tmp_path / "e/recency", "recency", "128", {"kv_retrieval": [1, 1, 1, 1], "needle": [0] * 4}, full, 0.125)
    lines = evolutions_lines(tmp_path, "e/namm_s*", "e/keydiff", "e/oracle", "e/recency")
    assert lines[2].startswith("| NAMM, mean of 3 evolutions | 1.00 [1.00, 1.00] | 0.75 [")
    assert [ln.split(" | ")[2][:4] for ln in lines[3:6]] == ["1.00", "0.50", "0.75"]  # each evolution's own
    (kd,) = [ln for ln in lines if ln.startswith("| keydiff")]
    assert kd.split(" | ")[2].startswith("0.50 [") and kd.split(" | ")[4].startswith("0.25 [")  # margin held out
    assert "NAMM's share of the oracle's gain over Recency, held out: 0.75 [" in lines[-2]
    assert lines[-1] in {
        f"Held out, NAMM is {v} KeyDiff at this budget." for v in ("ahead of", "behind", "not distinguishable from")
    }
    # every evolution perfect on 40 prompts, KeyDiff at zero: the whole interval is above 0
    full40 = {"kv_retrieval": [1] * 40, "needle": [1] * 40}
    for i in range(3):
        fake_eval(tmp_path / f"f/namm_s{i}", "namm", "64", full40, full40, 0.06)
    fake_eval(tmp_path / "f/keydiff", "keydiff", "64", {"kv_retrieval": [1] * 40, "needle": [0] * 40}, full40, 0.06)
    assert (
        evolutions_lines(tmp_path, "f/namm_s*", "f/keydiff")[-1] == "Held out, NAMM is ahead of KeyDiff at this budget."
    )
    with pytest.raises(ValueError, match="do not share their tasks and prompts"):
        evolutions_lines(tmp_path, "e/namm_s*", "f/keydiff")
    for i in range(2):  # a second way of evolving, two evolutions, both perfect on the same prompts
        fake_eval(tmp_path / f"g/namm_s{i}", "namm", "128", full, full, 0.125)
    table = variants_lines(tmp_path, "plain=e/namm_s*", "noise_handled=g/namm_s*")
    assert table[2].startswith("| plain | 3 | 1.00 [1.00, 1.00] | 0.75 [") and table[2].endswith("|  |  |")
    assert table[3].startswith(
        "| noise handled | 2 | 1.00 [1.00, 1.00] | 1.00 [1.00, 1.00] | 0.00 [0.00, 0.00] | 0.25 ["
    )


def test_score_curves_carry_their_prompt_interval_and_budget_mode_namms_stay_apart(tmp_path):
    """A same-budget baseline whose eval saved per-prompt scores is drawn with the 95% bootstrap band of
    its task group; NAMMs of two evolutions evaluated at one budget are two points, not one curve."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    from evolution.figures import curve_intervals, plot_score_vs_cache

    header = "policy,budget,task,score,full_score,normalised,cache_fraction,prompts,context\n"

    def write(name, policy, budgets, per_prompt):
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text(json.dumps({"kind": "namm-eval", "eval": {"policy": policy}}))
        rows, prompts = [], []
        for b in budgets:
            for t, scores in per_prompt.items():
                m = sum(scores) / len(scores)
                rows.append(f"{policy},{b},{t},{m},1,{m},{b / 64},{len(scores)},64\n")
                prompts += [f"{b},{t},{i},{s},1\n" for i, s in enumerate(scores)]
        (d / "eval.csv").write_text(header + "".join(rows))
        (d / "prompt_scores.csv").write_text("budget,task,prompt,score,full_score\n" + "".join(prompts))
        return d

    h2o = write("h2o", "h2o", (16, 32), {"kv_retrieval": [0, 1, 1, 0, 1, 1], "needle": [1] * 6})
    namms = [write(f"namm_s{i}", "namm", (8,), {"kv_retrieval": [i, 1, 0, 1], "needle": [1, 1, 1, i]}) for i in (0, 1)]
    bands = curve_intervals([h2o, *namms], {"kv_retrieval"})
    assert set(bands) == {("h2o", "16"), ("h2o", "32")}  # NAMMs are points, not curves
    lo, hi = bands["h2o", "16"]["trained"]
    assert 0 <= lo < 4 / 6 < hi <= 1  # six prompts, four right: the interval straddles 4/6
    assert bands["h2o", "16"]["held_out"] == (1.0, 1.0)  # every prompt right: no spread to resample
    fig = plot_score_vs_cache([h2o, *namms], {"kv_retrieval"}, {"namm": "C0", "h2o": "C1"}, compression=True)
    ax = fig.axes[0]
    assert len(ax.collections) == 1  # the h2o band
    band = ax.collections[0].get_paths()[0].vertices
    assert band[:, 1].min() == pytest.approx(lo) and band[:, 1].max() == pytest.approx(hi)
    labels = ax.get_legend_handles_labels()[1]
    assert labels == ["h2o, same budget per layer", "NAMM namm_s0 (at the budget)", "NAMM namm_s1 (at the budget)"]
    # the same baseline in two folders (different prompts) gets no band rather than a pooled one
    (tmp_path / "copy").mkdir()
    for f in ("config.json", "eval.csv", "prompt_scores.csv"):
        (tmp_path / "copy" / f).write_text((h2o / f).read_text())
    assert curve_intervals([h2o, tmp_path / "copy"], {"kv_retrieval"}) == {}


def test_every_policy_of_a_large_set_gets_its_own_colour(tmp_path):
    from evolution.figures import _colours

    header = "policy,budget,task,score,full_score,normalised,cache_fraction,prompts,context\n"
    evals = []
    for i in range(12):
        (tmp_path / f"p{i}").mkdir()
        (tmp_path / f"p{i}" / "eval.csv").write_text(header + f"pol{i:02d},8,needle,1,1,1,0.1,4,64\n")
        evals.append(tmp_path / f"p{i}")
    assert len(set(_colours(evals).values())) == 12  # matplotlib's C10 is C0: ten colours would repeat
    assert len(set(_colours(evals[:3]).values())) == 3


def test_full_from_reuses_the_full_cache_scores_and_refuses_other_prompts_or_bases(base, tmp_path):
    """--full-from gives the same files as recomputing the full cache; an eval on other prompts, a changed
    score or another base is refused in one line, before anything is written."""
    ev = ["--tasks", "kv_retrieval,needle", "--prompts", 5, "--context", 96, "--n-up", 32, "--metric", "prob", *SMALL]
    src, fresh, reused = tmp_path / "src", tmp_path / "fresh", tmp_path / "reused"
    assert run("namm", "eval", "--base", base, "--policy", "recency", "--budget", 48, *ev, "--out", src).exit_code == 0
    kd = ["namm", "eval", "--base", base, "--policy", "keydiff", "--budget", "40,64", *ev]
    assert run(*kd, "--out", fresh).exit_code == 0
    r = run(*kd, "--full-from", src, "--out", reused)
    assert r.exit_code == 0, r.output
    for f in ("eval.csv", "prompt_scores.csv", "eval.json"):
        assert (reused / f).read_bytes() == (fresh / f).read_bytes(), f
    assert json.loads((reused / "config.json").read_text())["eval"]["full_from"] == str(src)

    r = run(*kd, "--prompts", 4, "--full-from", src, "--out", tmp_path / "fewer")  # the last --prompts counts
    assert r.exit_code == 2 and "its prompts is 5, this eval's is 4" in r.output
    scores = (src / "prompt_scores.csv").read_text().splitlines()
    head, first = scores[0].split(","), scores[1].split(",")
    first[head.index("full_score")] = "0.123"
    (src / "prompt_scores.csv").write_text("\n".join([scores[0], ",".join(first), *scores[2:]]) + "\n")
    r = run(*kd, "--full-from", src, "--out", tmp_path / "changed")
    assert r.exit_code == 2 and "differ from this base's on the first 5 prompts" in r.output
    assert not (tmp_path / "changed" / "eval.csv").exists()
    other = tmp_path / "other" / base.name  # the same folder name, other weights
    shape = ["--layers", 2, "--d-model", 32, "--heads", 4, "--kv-heads", 2, "--max-context", 128, "--stream", "V"]
    r = run("namm", "train-base", *shape, "--steps", 2, "--batch", 2, "--min-context", 64, "--queries", 1, "--seed", 1,
            *SMALL, "--out", other)  # fmt: skip
    assert r.exit_code == 0, r.output
    r = run("namm", "eval", "--base", other, "--policy", "keydiff", "--budget", 48, *ev, "--full-from", fresh,
            "--out", tmp_path / "other_ev")  # fmt: skip
    assert r.exit_code == 2 and "differ from this base's" in r.output
