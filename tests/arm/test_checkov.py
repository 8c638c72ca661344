"""checkov with its own checks and ours (CKV_PACI_*): the template passes, and ours can fail."""

import copy
import json

import pytest

from arm.checkov import Report, run_checkov
from tests.arm.conftest import TEMPLATE, resources_of, worker_group

# checkov takes seconds a run: not in the fast lane.
pytestmark = pytest.mark.slow


def failed_ids(report: Report) -> set[str]:
    return {finding.check_id for finding in report.failed}


def test_template_passes_checkov():
    report = run_checkov(TEMPLATE)
    assert failed_ids(report) == set()
    passed = {finding.check_id for finding in report.passed}
    assert {"CKV_PACI_1", "CKV_PACI_2", "CKV_PACI_3"} <= passed


def test_every_skipped_check_has_a_written_reason():
    report = run_checkov(TEMPLATE)
    assert report.skipped, "expected the documented skips to be reported"
    for finding in report.skipped:
        assert len(finding.text) > 30 and finding.text != "No comment provided", finding.check_id


def _broken(template: dict, tmp_path, change) -> Report:
    broken = copy.deepcopy(template)
    change(worker_group(broken))
    path = tmp_path / "azuredeploy.json"
    path.write_text(json.dumps(broken))
    return run_checkov(path)


def _api_key_as_plain_value(group: dict) -> None:
    group["properties"]["containers"][0]["properties"]["environmentVariables"] = [
        {"name": "PREFECT_API_KEY", "value": "[parameters('prefectApiKey')]"}
    ]


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


def _flow_run_profile(template: dict) -> dict:
    [profile] = resources_of(template, "Microsoft.ContainerInstance/containerGroupProfiles")
    return profile


def test_the_standby_pools_profile_is_held_to_secure_values_and_identity_pulls(template, tmp_path):
    """The profile's env is an ARM expression (concat of createObject calls): a plain
    PREFECT_API_KEY built there fails, as does a password credential."""
    broken = copy.deepcopy(template)
    profile = _flow_run_profile(broken)
    env = profile["properties"]["containers"][0]["properties"]
    env["environmentVariables"] = env["environmentVariables"].replace(
        "variables('workerPrefectCredentials')",
        "createArray(createObject('name', 'PREFECT_API_KEY', 'value', "
        "parameters('prefectApiKey')))",
    )
    _password_credentials(profile)
    path = tmp_path / "azuredeploy.json"
    path.write_text(json.dumps(broken))
    profiles = "Microsoft.ContainerInstance/containerGroupProfiles."
    failed = {f.check_id for f in run_checkov(path).failed if f.resource.startswith(profiles)}
    assert {"CKV_PACI_2", "CKV_PACI_3"} <= failed
