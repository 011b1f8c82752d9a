"""A dummy of each kind of plug-in (stream arm, probe, memory policy, report section), registered in one
place, the ``dummies`` fixture: each is then offered by the CLI, passes the contract tests of its kind, and
is drawn (in the figures or the report) with nothing else edited."""

import matplotlib.figure
import pytest
import test_registries as contracts
import torch
from click.testing import CliRunner
from tiny import TINY_TOY

import amicl.report as report
from amicl.cli import amicl
from amicl.common.sections import SECTIONS, Section, Step
from evolution.config import POLICIES
from evolution.policies import MemoryPolicy
from transformers_mini.core import config as core_config
from transformers_mini.toy import probe_specs

PANEL = "dummy: layer 1 mass on token 0"


class FirstCoordinate(MemoryPolicy):
    """Keeps the tokens whose first key coordinate is largest (a policy nobody would use, but a valid one)."""

    name = "dummy"
    needs_budget = True

    def score(self, layer, cache):
        return cache.k[layer][..., 0]


def _dummy_section_steps(size: dict) -> list[Step]:
    sweep = ("memory", "sweep", "--K", "50", "--D", "30", "--trials", size["trials"], "--grid", "a=0:2:3")
    return [Step("dummy/sweep", (*sweep, "--out", "{dir}")), Step("dummy/figures", ("figures", "amicl", "{root}/dummy",
            "--out", "{dir}", "--format", "png"))]  # fmt: skip


@pytest.fixture
def dummies(monkeypatch):
    """The one place where the four dummies are registered (and removed again after the test)."""
    monkeypatch.setattr(probe_specs, "PROBES", list(probe_specs.PROBES))
    core_config.register_stream("KV", "kv")
    probe_specs.register(probe_specs.Probe("dummy_first", PANEL, final=True,
                                           compute=lambda c: c["attn1"][..., 0].mean((1, 2)).numpy()))  # fmt: skip
    POLICIES.register("dummy", FirstCoordinate)
    section = Section("A dummy section", {"quick": {"trials": "50"}, "paper": {"trials": "200"}}, _dummy_section_steps,
                      lambda root: ["the dummy's own text"], figures=("dummy/figures",))  # fmt: skip
    SECTIONS.register("dummy", section)
    yield
    del core_config.STREAMS["KV"]
    POLICIES.unregister("dummy")
    SECTIONS.unregister("dummy")


def drawn_texts(monkeypatch) -> list[str]:
    """Every text (titles, legends, ticks) of each figure saved from now on."""
    texts, save = [], matplotlib.figure.Figure.savefig

    def spy(fig, *args, **kwargs):
        texts.extend(t.get_text() for t in fig.findobj(matplotlib.text.Text))
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    return texts


def test_a_stream_arm_and_a_probe_are_offered_trained_tabulated_and_drawn(dummies, tmp_path, monkeypatch):
    contracts.test_stream_contract_zero_weight_is_the_baseline_and_unit_weight_is_not("KV")
    out = str(tmp_path / "cmp")
    args = ["transformer", "compare", "--streams", "none,KV", "--steps", "4", *map(str, TINY_TOY), "--out", out]
    r = CliRunner().invoke(amicl, args)
    assert r.exit_code == 0, r.output
    assert "| ic | KV |" in r.stdout and "dummy_first" in r.stdout  # the comparison and the final-probe table
    texts = drawn_texts(monkeypatch)
    r = CliRunner().invoke(amicl, ["figures", "streams", out, "--format", "png"])
    assert r.exit_code == 0, r.output
    assert "KV" in texts and PANEL in texts


def test_a_policy_is_offered_contract_tested_evaluated_and_in_the_report(dummies, tmp_path):
    contracts.test_policy_contract_budget_is_kept_per_head("dummy")
    contracts.test_policy_contract_keep_all_equals_no_policy("dummy")
    args = ["namm", "eval", "--base", "builtin:namm-base", "--policy", "dummy", "--budget", "16", "--tasks", "needle"]
    r = CliRunner().invoke(
        amicl, [*args, "--prompts", "2", "--context", "64", "--threads", "1", "--out", str(tmp_path)]
    )
    assert r.exit_code == 0, r.output
    names = [s.name for s in report.plan("quick")]
    assert "namm/eval/match_dummy" in names
    assert any("{root}/namm/eval/match_dummy" in s.argv for s in report.plan("quick") if s.name == "namm/table")


def test_a_report_section_is_planned_run_and_drawn(dummies, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    assert [s.name for s in report.plan("quick")][-2:] == ["dummy/sweep", "dummy/figures"]
    monkeypatch.setattr(report, "plan", lambda scale: _dummy_section_steps({"trials": "50"}))
    r = CliRunner().invoke(amicl, ["reproduce", "all", "--out", str(tmp_path / "all")])
    assert r.exit_code == 0, r.output
    md = (tmp_path / "all" / "report.md").read_text()
    part_c = md.split("# Part C")[1]
    assert f"## {len(SECTIONS)}. A dummy section\n\nthe dummy's own text\n\n    amicl memory sweep" in part_c
    page = (tmp_path / "all" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 1 and "dummy/sweep.png" in page
