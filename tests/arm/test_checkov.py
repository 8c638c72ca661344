"""checkov with its own checks and ours (CKV_PACI_*): the template passes, and ours can fail."""

import copy
import json
import subprocess

import pytest

from image_builder.settings import PROJECT_ROOT
from tests.arm.conftest import TEMPLATE, worker_group

CHECKOV = PROJECT_ROOT / ".venv-checkov" / "bin" / "checkov"
CHECKS = PROJECT_ROOT / "arm" / "checkov_checks"


def run_checkov(path) -> dict:
    done = subprocess.run(
        [
            str(CHECKOV),
            "-f",
            str(path),
            "--framework",
            "arm",
            "--skip-download",
            "--output",
            "json",
            "--external-checks-dir",
            str(CHECKS),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.stdout, done.stderr[-2000:]
    return json.loads(done.stdout)


def failed_ids(report: dict) -> set[str]:
    return {check["check_id"] for check in report.get("results", {}).get("failed_checks", [])}


def test_template_passes_checkov():
    report = run_checkov(TEMPLATE)
    assert failed_ids(report) == set()
    passed = {check["check_id"] for check in report["results"]["passed_checks"]}
    assert {"CKV_PACI_1", "CKV_PACI_2", "CKV_PACI_3"} <= passed


def test_every_skipped_check_has_a_written_reason():
    report = run_checkov(TEMPLATE)
    skipped = report["results"]["skipped_checks"]
    assert skipped, "expected the documented skips to be reported"
    for check in skipped:
        reason = check.get("check_result", {}).get("suppress_comment", "")
        assert len(reason) > 30 and reason != "No comment provided", check["check_id"]


def _broken(template: dict, tmp_path, change) -> dict:
    broken = copy.deepcopy(template)
    change(worker_group(broken))
    path = tmp_path / "azuredeploy.json"
    path.write_text(json.dumps(broken))
    return run_checkov(path)


def _api_key_as_plain_value(group: dict) -> None:
    for variable in group["properties"]["containers"][0]["properties"]["environmentVariables"]:
        if variable["name"] == "PREFECT_API_KEY":
            variable["value"] = variable.pop("secureValue")


def _password_credentials(group: dict) -> None:
    group["properties"]["imageRegistryCredentials"] = [
        {"server": "x.azurecr.io", "username": "u", "password": "[parameters('prefectApiKey')]"}
    ]


@pytest.mark.parametrize(
    ("change", "check_id"),
    [
        (lambda group: group["properties"].pop("subnetIds"), "CKV_PACI_1"),
        (_password_credentials, "CKV_PACI_2"),
        (_api_key_as_plain_value, "CKV_PACI_3"),
    ],
)
def test_project_checks_fail_what_they_guard(template, tmp_path, change, check_id):
    assert check_id in failed_ids(_broken(template, tmp_path, change))
