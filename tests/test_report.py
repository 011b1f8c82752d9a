"""``amicl reproduce all`` end to end on a tiny plan: every section filled, resumable, one self-contained
page (looked at in a real browser where Chromium is installed)."""

import re
import shutil
import subprocess

import numpy as np
import pytest
from click.testing import CliRunner
from tiny import tiny_plan

import amicl.report as report
from amicl.cli import amicl
from amicl.report import plan
from evolution.section import baselines


def test_reproduce_all_fills_every_section_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "plan", tiny_plan)
    out = tmp_path / "all"
    r = CliRunner().invoke(amicl, ["reproduce", "all", "--out", str(out)])
    assert r.exit_code == 0, r.output
    md = (out / "report.md").read_text()
    for heading in ("## 1. Associative", "## 2. The residual", "## 3. Theory", "## 4. NAMM", "## 5. Language"):
        assert heading in md
    assert "paired t p" in md  # the IOI section's arm comparison
    assert "(missing" not in md
    assert "| K=512, a=2 | 1.000 |" in md  # the notebook's number beside ours
    assert "| V | " in md and "24% fewer steps" in md
    assert all(f"| {p} |" in md for p in baselines())
    assert "amicl transformer compare --streams none,V" in md  # the command behind the numbers
    # Part A: the committed headlines, regenerated from results/ by the documents' own generators
    assert "# Part A. The committed headlines" in md and "(not available" not in md
    assert "| V | 24/24 | 0% [0%, 14%] | 25,500 [24,750, 26,000] | 18.5% [17.5%, 20.0%]" in md
    assert "Source: `results/namm/sweeps/table_frozen/table.md`" in md and "| keydiff |" in md
    # Part B: every shipped toy model evaluated now, or said to be pending
    assert "# Part B. The shipped models, checked now" in md
    from amicl.common.artifacts import manifest, pending

    for name in pending():
        assert f"builtin:{name} is not shipped in this release" in md
    for name, entry in manifest().items():
        if entry["kind"] == "streams":
            assert f"## builtin:{name}" in md and "| no |" not in md.split(f"## builtin:{name}")[1].split("#")[0]
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 5 and "<table>" in page and 'src="http' not in page
    before = (out / "steps.json").read_text()
    r = CliRunner().invoke(amicl, ["reproduce", "all", "--out", str(out)])
    assert r.exit_code == 0 and "[" not in r.stderr, r.output  # every step done: nothing re-run
    assert (out / "steps.json").read_text() == before
    r = CliRunner().invoke(amicl, ["reproduce", "all", "--out", str(out), "--scale", "paper"])
    assert r.exit_code == 2 and "holds a quick run" in r.stderr


def test_plans_name_real_commands():
    for scale in ("quick", "paper"):
        for step in plan(scale):
            cmd = amicl
            for word in step.argv:
                if not hasattr(cmd, "get_command"):
                    break
                cmd = cmd.get_command(None, word)
                assert cmd is not None, f"{scale}: {step.argv[:3]}"
    with pytest.raises(ValueError, match="scale"):
        plan("huge")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine")
def test_report_page_renders_in_a_browser(tmp_path):
    from PIL import Image

    page = tmp_path / "r.html"
    img = tmp_path / "fig" / "figures" / "x.png"
    img.parent.mkdir(parents=True)
    Image.new("RGB", (400, 300), (200, 30, 30)).save(img)
    page.write_text(report.markdown_to_html("# Title\n\n| a | b |\n|---|---|\n| 1 | 2 |\n", "t", [img]))
    shot = tmp_path / "shot.png"
    subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}", "--window-size=1200,900",
         page.as_uri()],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert (pixels == (200, 30, 30)).all(-1).sum() > 10_000  # the embedded figure was drawn
    assert re.search("Title", page.read_text())


def test_a_failing_step_stops_the_run_in_one_line(tmp_path, monkeypatch):
    from amicl.report import Step

    monkeypatch.setattr(report, "plan", lambda scale: [Step("amicl", ("memory", "run", "--trials", "0"))])
    r = CliRunner().invoke(amicl, ["reproduce", "all", "--out", str(tmp_path / "all")])
    assert r.exit_code == 1 and "step amicl failed (exit 2" in r.stderr
    assert not (tmp_path / "all" / "steps.json").exists()


def test_the_shipped_namm_gives_its_recorded_numbers_and_a_change_shows_as_no(tmp_path):
    """Part B's check of the evolved NAMM: its recorded command (16 fresh prompts per task) run now gives the
    recorded scores, full-cache scores and cache kept; a changed number reads 'no'."""
    from amicl.common.artifacts import manifest
    from amicl.report import _artifact_steps, check_table

    check = manifest()["namm"]["check"]
    (step,) = [s for s in _artifact_steps() if s.name == "artifacts/namm"]
    r = CliRunner().invoke(amicl, step.args(tmp_path))
    assert r.exit_code == 0, r.output
    table = check_table(tmp_path / "artifacts" / "namm", check)
    assert table.count("| yes |") == len(check["expect"]) == 4 and "| no |" not in table
    changed = {**check, "expect": [{**check["expect"][0], "cache_fraction": "0.5"}, *check["expect"][1:]]}
    assert check_table(tmp_path / "artifacts" / "namm", changed).count("| no |") == 1
