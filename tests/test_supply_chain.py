"""What the project fetches from elsewhere is pinned to content, and secrets reach only the step
that needs them: GitHub actions by commit SHA, registry and Azure secrets in the push step alone,
Azurite from a committed npm lock with integrity hashes."""

import json
import os
import re
import stat
from pathlib import Path

import pytest
import yaml

from prefect_aci.core.paths import PROJECT_ROOT
from prefect_aci.demo import azurite

WORKFLOW = PROJECT_ROOT / ".github" / "workflows" / "ci.yml"
PINNED_ACTION = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+(\.\d+)*$")


def _workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def _steps(workflow: dict):
    for job_name, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            yield job_name, step


def test_every_action_is_pinned_by_commit_sha_with_its_tag():
    lines = [
        line.strip().removeprefix("- ").removeprefix("uses: ")
        for line in WORKFLOW.read_text().splitlines()
        if re.match(r"^\s*-?\s*uses:", line)
    ]
    assert lines
    assert [line for line in lines if not PINNED_ACTION.match(line)] == []


def test_secrets_reach_only_the_push_step():
    workflow = _workflow()
    outside_steps = {k: v for k, v in workflow.items() if k != "jobs"}
    jobs = {
        name: {k: v for k, v in job.items() if k != "steps"}
        for name, job in workflow["jobs"].items()
    }
    assert "secrets." not in str(outside_steps)
    assert "secrets." not in str(jobs)
    with_secrets = [
        (job, step.get("name", step.get("uses")))
        for job, step in _steps(workflow)
        if "secrets." in str(step)
    ]
    assert with_secrets == [("publish", "Push")]
    push = next(step for _, step in _steps(workflow) if step.get("name") == "Push")
    assert push["run"].startswith("make push")


def test_azurites_lock_pins_every_package_with_an_integrity_hash():
    package = json.loads((azurite.NPM_PROJECT / "package.json").read_text())
    lock = json.loads((azurite.NPM_PROJECT / "package-lock.json").read_text())
    assert package["dependencies"] == {"azurite": azurite.AZURITE_VERSION}
    assert re.fullmatch(r"\d+\.\d+\.\d+", azurite.AZURITE_VERSION)
    assert lock["packages"][""]["dependencies"] == package["dependencies"]
    assert lock["packages"]["node_modules/azurite"]["version"] == azurite.AZURITE_VERSION
    installed = {path: entry for path, entry in lock["packages"].items() if path}
    assert len(installed) > 100
    assert [
        path
        for path, entry in installed.items()
        if not entry.get("integrity", "").startswith("sha512-") or not entry.get("version")
    ] == []


FAKE_NPM = """#!/bin/sh
echo "$@" >> "{calls}"
prefix="$3"
mkdir -p "$prefix/node_modules/.bin"
touch "$prefix/node_modules/.bin/azurite-blob"
"""


@pytest.fixture
def fake_npm(tmp_path, monkeypatch) -> Path:
    """An `npm` first on PATH that records its arguments and makes Azurite's binary."""
    calls = tmp_path / "npm-calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text(FAKE_NPM.format(calls=calls))
    npm.chmod(npm.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls


def test_azurite_is_installed_with_npm_ci_from_the_committed_lock(tmp_path, fake_npm):
    prefix = tmp_path / "node"
    azurite.install(prefix)
    assert fake_npm.read_text().split() == [
        "ci",
        "--prefix",
        str(prefix),
        "--ignore-scripts",
        "--no-audit",
        "--no-fund",
        "--loglevel=error",
    ]
    for name in ("package.json", "package-lock.json"):
        assert (prefix / name).read_bytes() == (azurite.NPM_PROJECT / name).read_bytes()


def test_azurite_is_reused_while_installed_from_the_same_lock(tmp_path, fake_npm):
    prefix = tmp_path / "node"
    azurite.install(prefix)
    azurite.install(prefix)
    assert len(fake_npm.read_text().splitlines()) == 1


def test_azurite_installed_otherwise_is_installed_again_from_the_lock(tmp_path, fake_npm):
    prefix = tmp_path / "node"
    binary = prefix / "node_modules" / ".bin" / "azurite-blob"
    binary.parent.mkdir(parents=True)
    binary.touch()  # as `npm install azurite@...` left it, with no lock behind it
    azurite.install(prefix)
    assert fake_npm.read_text().split()[0] == "ci"


BOOTSTRAP = PROJECT_ROOT / "scripts" / "bootstrap.sh"


def _requirements(lock: Path) -> list[str]:
    """Each requirement of a uv-compiled lock with its continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", lock.read_text())
    return [line for line in text.splitlines() if line and not line.lstrip().startswith("#")]


def test_bootstrap_downloads_nothing_without_a_hash():
    lines = [line.strip() for line in BOOTSTRAP.read_text().splitlines()]
    installs = [line for line in lines if re.search(r"\bpip_install \"", line)]
    assert installs
    unhashed = [
        line
        for line in installs
        if not re.search(r"--require-hashes -r ([\w.-]+\.lock|\"\$lock\")(; })?$", line)
        and not re.search(r"--no-deps --no-build-isolation -e \.$", line)
    ]
    assert unhashed == []
    assert not [line for line in lines if re.search(r"\b(curl|wget)\b", line)]
    text = "\n".join(lines)
    # A tool's venv (tool_venv VENV LOCK) installs from the lock it is called with.
    named = re.findall(r"-r ([\w.-]+\.lock)", text) + re.findall(
        r"tool_venv \S+ ([\w.-]+\.lock)", text
    )
    locks = {PROJECT_ROOT / name for name in named}
    assert PROJECT_ROOT / "requirements-az.lock" in locks
    assert PROJECT_ROOT / "requirements-bootstrap.lock" in locks
    for lock in locks:
        assert [req for req in _requirements(lock) if "--hash=sha256:" not in req] == [], lock


def test_the_bootstrap_pip_is_pinned_and_relocked_with_the_others():
    from prefect_aci.cli.dev import LOCKS

    assert LOCKS["requirements-bootstrap.lock"] == "requirements-bootstrap.in"
    (pip,) = _requirements(PROJECT_ROOT / "requirements-bootstrap.lock")
    assert re.match(r"pip==\d+\.\d+(\.\d+)? ", pip)
