"""What a user installs: the wheel holds every module of every package and the shipped artifacts, and the
artifacts in the repository are the ones the manifest records (a file missing from a clone is a failure
here, not a 'reinstall amicl' message later)."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import amicl.common.artifacts as artifacts

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("amicl", "transformers_mini", "evolution")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """A wheel built from a clean copy of the sources (a stale build/ folder cannot hide a missing file)."""
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("dist")
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, src / pkg, ignore=skip)
    for f in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / f, src / f)
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)]
    subprocess.run(cmd, check=True, capture_output=True)
    (path,) = out.glob("amicl-*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_holds_every_module_of_every_package(wheel):
    names = set(wheel.namelist())
    modules = {p.relative_to(ROOT).as_posix() for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    assert modules and modules <= names, sorted(modules - names)[:5]
    for folder in {Path(m).parent for m in modules}:  # a folder without __init__.py is not a package
        assert (ROOT / folder / "__init__.py").is_file(), f"{folder} has no __init__.py"


def test_the_wheel_ships_every_artifact_as_the_manifest_records_it(wheel):
    entries = artifacts.manifest(artifacts.ROOT)
    assert entries, "the repository ships no artifacts"
    for name, entry in entries.items():
        for file, info in entry["files"].items():
            data = wheel.read(f"amicl/artifacts/{name}/{file}")
            assert len(data) == info["bytes"], f"{name}/{file}"
            assert artifacts.sha256_bytes(data) == info["sha256"], f"{name}/{file}"


@pytest.mark.parametrize("name", sorted(artifacts.manifest(artifacts.ROOT)))
def test_every_artifact_in_the_repository_matches_its_manifest(name):
    assert artifacts.resolve(f"builtin:{name}") == artifacts.ROOT / name  # raises DamagedFile on a missing file
