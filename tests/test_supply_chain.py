"""What the project fetches from elsewhere is pinned to content, and secrets reach only the step
that needs them: GitHub actions by commit SHA, registry and Azure secrets in the push step alone."""

import re

import yaml

from prefect_aci.core.paths import PROJECT_ROOT

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
