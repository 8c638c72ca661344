"""The Azure CLI on the demo stack's local Azure, as a user looks at it: `az` from .venv-az
(`make az`), set up by running the lines `prefect-aci demo az` prints (its own config folder,
the stack's CA bundle, the proxy to Azure's names, the cloud registered from local Resource
Manager's metadata endpoint, `az login --identity` as the deployer), then the commands a user
reaches for when a run misbehaves, each asserted on what az prints.

The run these tests look at keeps its container group (`keep_container_group`), so that it can
be listed, its logs read and the group deleted with az, as on Azure."""

import json
import os
import subprocess
import time

import pytest
from prefect.client.schemas.objects import StateType

from arm.deploy import DEPLOYMENT_NAME
from prefect_aci.core.paths import PROJECT_ROOT
from prefect_aci.core.records import AzureRecord
from tests.demo.conftest import Stack, demo
from tests.demo.test_worker_paths import (  # noqa: F401 (test_flows is a fixture used here)
    TERMINAL,
    deploy,
    group_of,
    run,
    test_flows,
    wait,
)

AZ_VENV = PROJECT_ROOT / ".venv-az"
# What a user's shell may hold that would sign az in as someone else or send it elsewhere.
FOREIGN = ("AZURE_", "IDENTITY_", "MSI_", "IMDS_", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY")


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.upper().startswith(FOREIGN)}


def az(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["az", *args], capture_output=True, text=True, env=env, timeout=180, cwd=PROJECT_ROOT
    )
    if check:
        assert result.returncode == 0, f"az {' '.join(args)}: {result.stderr[-3000:]}"
    return result


def az_json(env: dict[str, str], *args: str):
    return json.loads(az(env, *args, "--output", "json").stdout)


def set_up(lines: str, extra: str = "") -> dict[str, str]:
    """Run the lines `demo az` printed in bash (then ``extra``); the environment they left."""
    result = subprocess.run(
        ["bash", "-c", f"set -e\n{lines}\n{extra}\nenv -0"],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=300,
    )
    assert result.returncode == 0, f"the lines of demo az failed: {result.stderr[-3000:]}"
    return dict(item.split("=", 1) for item in result.stdout.split("\0") if "=" in item)


@pytest.fixture(scope="module")
def az_lines(stack: Stack) -> str:
    assert (AZ_VENV / "bin" / "az").exists(), "no .venv-az: `make az` makes it (make test does)"
    printed = demo("az", state_dir=stack.folder, timeout=120)
    assert printed.returncode == 0, printed.stderr
    return printed.stdout


@pytest.fixture(scope="module")
def deployer(az_lines: str) -> dict[str, str]:
    """az's environment, signed in as the deployer by the lines `demo az` printed."""
    return set_up(az_lines)


@pytest.fixture(scope="module")
def kept_run(stack: Stack, request) -> tuple[str, str]:
    """A flow run that ended and kept its container group: (its group's name, its marker)."""
    flows = request.getfixturevalue("test_flows")
    deployment = deploy(stack, flows, "test_flows/sleeps.py:sleeps")
    flow_run = run(stack, deployment, {"keep_container_group": True}, {"seconds": 3})
    final = wait(stack, flow_run, TERMINAL)
    assert final.state.type == StateType.COMPLETED, final.state
    return group_of(flow_run, "sleeps"), "sleeping 3 s"


def test_demo_az_uses_a_config_folder_of_its_own_and_prints_no_secret(stack, az_lines, deployer):
    assert f"export AZURE_CONFIG_DIR={(stack.folder / 'az').resolve()}" in az_lines
    assert deployer["AZURE_CONFIG_DIR"].startswith(str(stack.folder.resolve()))
    assert stack.side.deployer_secret not in az_lines
    assert f"export REQUESTS_CA_BUNDLE={stack.side.tls.bundle.resolve()}" in az_lines
    account = az_json(deployer, "account", "show")
    assert account["id"] == stack.record.subscription_id
    assert account["environmentName"] == "prefect-aci-local"
    assert account["user"] == {
        "assignedIdentityInfo": "MSI",
        "name": "systemAssignedIdentity",
        "type": "servicePrincipal",
    }


def test_az_group_show_and_resource_list_give_the_stacks_resource_group(stack, deployer):
    record: AzureRecord = stack.record
    shown = az_json(deployer, "group", "show", "--name", record.resource_group)
    assert shown["id"] == (
        f"/subscriptions/{record.subscription_id}/resourceGroups/{record.resource_group}"
    )
    assert shown["properties"]["provisioningState"] == "Succeeded"
    resources = az_json(deployer, "resource", "list", "--resource-group", record.resource_group)
    names = {(r["type"], r["name"]) for r in resources}
    assert ("Microsoft.KeyVault/vaults", record.key_vault_name) in names
    assert ("Microsoft.ContainerInstance/containerGroups", stack.state.worker_group) in names


def test_az_deployment_group_list_and_show_give_the_templates_deployment(stack, deployer):
    group = stack.record.resource_group
    listed = az_json(deployer, "deployment", "group", "list", "--resource-group", group)
    states = {d["name"]: d["properties"]["provisioningState"] for d in listed}
    assert states[DEPLOYMENT_NAME] == "Succeeded"
    shown = az_json(deployer, "deployment", "group", "show", "-g", group, "--name", DEPLOYMENT_NAME)
    outputs = {k: v["value"] for k, v in shown["properties"]["outputs"].items()}
    assert outputs["keyVaultUri"] == stack.record.key_vault_uri
    assert outputs["jobIdentityClientId"] == stack.record.job_identity_client_id


def test_az_identity_list_gives_the_templates_identities(stack, deployer):
    listed = az_json(deployer, "identity", "list", "--resource-group", stack.record.resource_group)
    by_id = {i["id"].lower(): i for i in listed}
    job = by_id[stack.record.job_identity_id.lower()]
    assert job["clientId"] == stack.record.job_identity_client_id
    assert stack.record.worker_identity_id.lower() in by_id


def test_az_role_assignment_list_gives_the_worker_its_custom_role(stack, deployer):
    group = stack.record.resource_group
    listed = az_json(deployer, "role", "assignment", "list", "--resource-group", group)
    worker = az_json(deployer, "identity", "show", "--ids", stack.record.worker_identity_id)
    roles = {a["roleDefinitionName"] for a in listed if a["principalId"] == worker["principalId"]}
    assert any(r.startswith(f"Prefect ACI worker ({group},") for r in roles), roles
    # Microsoft Graph names the principals (the identity's service principal, by its app id).
    names = {a["principalName"] for a in listed if a["principalId"] == worker["principalId"]}
    assert names == {worker["clientId"]}


def test_az_keyvault_secret_list_as_the_job_identity_and_not_as_the_deployer(
    stack, az_lines, deployer, tmp_path
):
    vault = stack.record.key_vault_name
    refused = az(deployer, "keyvault", "secret", "list", "--vault-name", vault, check=False)
    assert refused.returncode != 0
    assert "ForbiddenByRbac" in refused.stderr
    # The job identity (Key Vault Secrets User on the vault, as the template assigns it).
    job = set_up(
        az_lines.replace(
            f"export AZURE_CONFIG_DIR={(stack.folder / 'az').resolve()}",
            f"export AZURE_CONFIG_DIR={tmp_path / 'az-job'}",
        ),
        f"az login --identity --client-id {stack.record.job_identity_client_id} --output none",
    )
    listed = az_json(job, "keyvault", "secret", "list", "--vault-name", vault)
    ids = {s["id"] for s in listed}
    assert f"{stack.record.key_vault_uri.rstrip('/')}/secrets/prefect-aci-demo-secret" in ids
    assert all("value" not in s for s in listed)


def test_az_container_list_show_logs_and_delete_of_a_runs_group(stack, deployer, kept_run):
    group, marker = kept_run
    rg = stack.record.resource_group
    listed = az_json(deployer, "container", "list", "--resource-group", rg)
    names = {g["name"] for g in listed}
    assert {group, stack.state.worker_group} <= names
    # The run is Completed in Prefect a moment before its process exits: wait for the exit.
    deadline = time.monotonic() + 90
    while True:
        shown = az_json(deployer, "container", "show", "--resource-group", rg, "--name", group)
        state = shown["containers"][0]["instanceView"]["currentState"]
        if state["state"] == "Terminated" or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert (state["state"], state["exitCode"]) == ("Terminated", 0)
    logs = az(deployer, "container", "logs", "--resource-group", rg, "--name", group).stdout
    assert marker in logs
    # The run's own ARM deployment (prefect-azure submits each run as one, named after it).
    deployments = az_json(deployer, "deployment", "group", "list", "--resource-group", rg)
    states = {d["name"]: d["properties"]["provisioningState"] for d in deployments}
    assert states[f"prefect-{group}"] == "Succeeded"
    az(deployer, "container", "delete", "--resource-group", rg, "--name", group, "--yes")
    after = {g["name"] for g in az_json(deployer, "container", "list", "--resource-group", rg)}
    assert group not in after
    assert stack.state.worker_group in after


def test_a_command_local_azure_does_not_serve_fails_with_azures_error_saying_so(stack, deployer):
    refused = az(
        deployer, "vm", "list", "--resource-group", stack.record.resource_group, check=False
    )
    assert refused.returncode != 0
    assert "(InvalidResourceType)" in refused.stderr
    assert "is not served by local Azure" in refused.stderr


def test_az_container_list_across_the_subscription_is_refused_as_azure_refuses_it(deployer):
    """The deployer holds Owner on the resource group only: listing across the subscription
    needs read on the subscription, and Azure answers 403 AuthorizationFailed there."""
    refused = az(deployer, "container", "list", check=False)
    assert refused.returncode != 0
    assert "(AuthorizationFailed)" in refused.stderr
    assert "'Microsoft.ContainerInstance/containerGroups/read'" in refused.stderr
