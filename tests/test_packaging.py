import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text, flags=re.S)[:2]


def test_ci_runs_exactly_the_readme_test_command():
    main_job, tests = readme_commands()
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert tests in ci
    assert "torch==2.13.0" in main_job and "torch==2.13.0" in tests
    assert "amicl reproduce" in main_job


def test_setup_cfg_keeps_torch_open_for_gpu_users():
    cfg = (ROOT / "setup.cfg").read_text()
    assert re.search(r"^\s+torch>=2\.2$", cfg, flags=re.M)
    assert "console_scripts" in cfg and "amicl = amicl.cli:main" in cfg
