"""`prefect-aci azure deploy`'s own code (arm/deploy.py's Infra, azure-mgmt-resource over a real
socket) against local Resource Manager's routes: what-if (202 + Location, then the changes),
the deployment of the whole template to the record it makes from the outputs, and the recorded
resources read back by id (the vault's retention, the worker's custom role at the subscription).
Container groups go to a stand-in for Groups (no Docker); the caller is the deployer, signed in
through local ACI's own identity endpoint and holding Owner on the resource group."""

import time

import pytest
from azure.identity import ManagedIdentityCredential

from arm.deploy import WORKER_ROLE_PREFIX, Infra
from prefect_aci.local_aci.app import MANAGEMENT
from tests.local_aci.arm_helpers import (
    GROUP,
    GROUP_ID,
    SUBSCRIPTION,
    TEMPLATE,
    deploy_parameters,
    deploy_settings,
    template_outputs,
)
from tests.local_azure_helpers import start_local


@pytest.fixture
def local(tmp_path, monkeypatch):
    found = start_local(tmp_path)
    for name, value in found.identity_env().items():
        monkeypatch.setenv(name, value)
    yield found
    found.close()


@pytest.fixture
def settings(monkeypatch):
    return deploy_settings(monkeypatch)


@pytest.fixture
def params(settings) -> dict:
    return deploy_parameters(settings)


@pytest.fixture
def infra(local, settings):
    return Infra.connect(settings, ManagedIdentityCredential(), transport=local.transport())


def test_what_if_deploy_and_read_back_through_azure_mgmt_resource(local, infra, params):
    arm, server = local.arm, local.server
    infra.ensure_resource_group()
    changes = infra.what_if(TEMPLATE, params)
    assert changes and {kind for kind, _ in changes} == {"Create"}
    assert arm.store.resources == {}
    [post] = [r for r in server.received if r.method == "POST"]
    assert post.path.endswith("/deployments/prefect-aci-infra/whatIf")

    record = infra.deploy(TEMPLATE, params)
    job = next(
        r
        for r in arm.store.by_type("Microsoft.ManagedIdentity/userAssignedIdentities")
        if r.body["name"] == "prefect-job-id"
    )
    assert record.job_identity_client_id == job.properties["clientId"]
    assert record.resource_group == GROUP and record.subscription_id == SUBSCRIPTION
    # What the registration tests take for a deployment's outputs names the same outputs.
    deployment = arm.get(GROUP, "prefect-aci-infra")
    assert set(template_outputs(SUBSCRIPTION, GROUP)) == set(deployment.outputs)

    # Read back by id with the SDK: the vault (as deploy reads it before a redeploy) and the
    # worker's custom role at the subscription (as destroy finds it).
    assert infra.vault_retention(params) is None
    shorter = {**params, "softDeleteRetentionInDays": {"value": 7}}
    assert infra.vault_retention(shorter) == (record.key_vault_name, 90)
    role = infra.worker_role()
    assert role is not None and role.name.startswith(WORKER_ROLE_PREFIX)
    recorded = {r.id for r in arm.store.by_type("Microsoft.Authorization/roleDefinitions")}
    assert role.id in recorded and {r.id for r in infra.worker_roles()} == recorded

    again = infra.what_if(TEMPLATE, params)
    assert {kind for kind, _ in again} == {"NoChange"}
    assert [resource for _, resource in again] == [resource for _, resource in changes]


def test_a_refused_deployment_reaches_the_sdk_as_arms_error(local, infra, params):
    bad = {**params, "registrySku": {"value": "Gold"}}
    with pytest.raises(Exception, match="InvalidTemplate"):
        infra.deploy(TEMPLATE, bad)


def test_recorded_resources_are_read_and_listed_on_their_arm_paths(local, infra, params):
    arm, server = local.arm, local.server
    infra.deploy(TEMPLATE, params)
    client = server.client
    token = ManagedIdentityCredential().get_token(f"{MANAGEMENT}/.default").token
    client.headers["Authorization"] = f"Bearer {token}"  # the deployer's, on every request
    query = {"api-version": "2026-02-01"}
    [vault] = arm.store.by_type("Microsoft.KeyVault/vaults")
    listed = client.get(f"{GROUP_ID}/providers/Microsoft.KeyVault/vaults", params=query)
    assert listed.status_code == 200 and listed.json() == {"value": [vault.body]}
    secret = client.get(f"{vault.id}/secrets/prefect-aci-demo-secret", params=query)
    assert secret.status_code == 200 and secret.json()["name"] == "prefect-aci-demo-secret"
    assert "value" not in secret.json()["properties"]
    subnet = client.get(
        f"{GROUP_ID}/providers/Microsoft.Network/virtualNetworks/prefect-vnet/subnets/aci",
        params={"api-version": "2025-07-01"},
    )
    assert subnet.json()["properties"]["provisioningState"] == "Succeeded"
    # Paths are matched without regard to case, as Azure does.
    on_vault = client.get(
        f"{vault.id.lower()}/providers/microsoft.authorization/roleassignments",
        params={"api-version": "2022-04-01"},
    )
    # At, above and below the vault, as the Authorization provider lists them without a filter.
    scopes = {a["properties"]["scope"] for a in on_vault.json()["value"]}
    assert vault.id in scopes
    assert all(vault.id.lower().startswith(scope.lower()) for scope in scopes)
    roles = client.get(
        f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions",
        params={"api-version": "2022-04-01"},
    )
    # The template's two custom roles: the worker's, and the linked one (job identity, subnet),
    # beside the built-in ones.
    kinds = [r["properties"]["type"] for r in roles.json()["value"]]
    assert kinds.count("CustomRole") == 2 and "BuiltInRole" in kinds
    missing = client.get(f"{GROUP_ID}/providers/Microsoft.KeyVault/vaults/nope", params=query)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "ResourceNotFound"
    # A DELETE removes the resource and what is under it (its secrets); a second finds none.
    deleted = client.delete(vault.id, params=query)
    assert deleted.status_code == 200 and deleted.json()["id"] == vault.id
    assert client.get(vault.id, params=query).status_code == 404
    assert client.get(f"{vault.id}/secrets", params=query).json() == {"value": []}
    assert client.delete(vault.id, params=query).status_code == 204
    other = client.get(
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/other/providers/Microsoft.KeyVault/vaults",
        params=query,
    )
    assert other.status_code == 404 and other.json()["error"]["code"] == "ResourceGroupNotFound"


def test_a_throttling_fault_answers_with_retry_after_and_the_sdk_waits_it_out(local, infra):
    """ARM's 429 with Retry-After, twice: azure-core's retry policy waits what the header says
    and the read succeeds."""
    local.inject_fault(
        method="GET",
        path_contains="/resourcegroups/" + GROUP,
        status=429,
        times=2,
        code="TooManyRequests",
        retry_after=1,
    )
    started = time.monotonic()
    assert infra.client.resource_groups.get(GROUP).name == GROUP
    assert time.monotonic() - started >= 2  # two Retry-After: 1 honoured
    assert len(local.of("GET", "/resourcegroups/" + GROUP)) == 3
