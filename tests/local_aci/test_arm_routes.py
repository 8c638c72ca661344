"""`prefect-aci azure deploy`'s own code (arm/deploy.py's Infra, azure-mgmt-resource over a real
socket) against local Resource Manager's routes: what-if (202 + Location, then the changes),
the deployment of the whole template to the record it makes from the outputs, and the recorded
resources read back by id (the vault's retention, the worker's custom role at the subscription).
Container groups go to a stand-in for Groups (no Docker); the caller is let through (who may do
what is the authorisation's tests' subject)."""

import time
from types import SimpleNamespace

import jwt
import pytest
from azure.core.credentials import AccessToken
from fastapi.testclient import TestClient

from arm.deploy import WORKER_ROLE_PREFIX, Infra
from prefect_aci.local_aci.app import MANAGEMENT, LocalAci, https_app
from prefect_aci.local_aci.resource_manager import ResourceManager
from tests.local_aci.arm_helpers import (
    DEPLOYER,
    GROUP,
    GROUP_ID,
    SCHEMAS,
    SUBSCRIPTION,
    TEMPLATE,
    TENANT,
    FakeGroups,
    deploy_parameters,
    deploy_settings,
)
from tests.redirect import RedirectTransport
from tests.stand_ins import Answer, Request, StandIn

PASSED_ON = ("content-type", "location", "azure-asyncoperation", "retry-after")


class Unchecked(LocalAci):
    """Local ACI that lets every caller through."""

    def _arm_caller(self, *args, **kwargs):
        return None

    def _deploy_authorizer(self, claims):
        return None


class LocalArm(StandIn):
    """The app's HTTPS routes behind a loopback socket, as management.azure.com."""

    def __init__(self, aci: LocalAci) -> None:
        super().__init__()
        self.client = TestClient(https_app(aci), base_url=MANAGEMENT)

    def answer(self, request: Request) -> Answer:
        response = self.client.request(
            request.method,
            request.path,
            params=request.query,
            content=request.body,
            headers={"content-type": request.headers.get("content-type", "application/json")},
        )
        headers = {k: v for k, v in response.headers.items() if k.lower() in PASSED_ON}
        return Answer(response.status_code, response.content, headers)


class Credential:
    """A token whose claims say the deployer (arm/deploy.py reads the object id from it)."""

    def get_token(self, *scopes, **kwargs) -> AccessToken:
        claims = {"oid": DEPLOYER, "idtyp": "user", "scp": "user_impersonation", "tid": TENANT}
        return AccessToken(jwt.encode(claims, "k" * 32, algorithm="HS256"), int(time.time()) + 3600)


@pytest.fixture
def local():
    groups = FakeGroups([])
    arm = ResourceManager(SUBSCRIPTION, groups, SCHEMAS, tenant_id=TENANT)
    config = SimpleNamespace(
        subscription_id=SUBSCRIPTION,
        resource_group=GROUP,
        resource_group_id=GROUP_ID,
        location="westeurope",
        tenant_id=TENANT,
    )
    server = LocalArm(Unchecked(config, groups, arm, None, "secret"))
    yield arm, server
    server.close()


@pytest.fixture
def settings(monkeypatch):
    return deploy_settings(monkeypatch)


@pytest.fixture
def params(settings) -> dict:
    return deploy_parameters(settings)


@pytest.fixture
def infra(local, settings):
    _, server = local
    return Infra.connect(
        settings, Credential(), transport=RedirectTransport(MANAGEMENT, server.url)
    )


def test_what_if_deploy_and_read_back_through_azure_mgmt_resource(local, infra, params):
    arm, server = local
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

    # Read back by id with the SDK: the vault (as deploy reads it before a redeploy) and the
    # worker's custom role at the subscription (as destroy finds it).
    assert infra.vault_retention(params) is None
    shorter = {**params, "softDeleteRetentionInDays": {"value": 7}}
    assert infra.vault_retention(shorter) == (record.key_vault_name, 90)
    role = infra.worker_role()
    assert role is not None and role.name.startswith(WORKER_ROLE_PREFIX)
    [recorded_role] = arm.store.by_type("Microsoft.Authorization/roleDefinitions")
    assert role.id == recorded_role.id

    again = infra.what_if(TEMPLATE, params)
    assert {kind for kind, _ in again} == {"NoChange"}
    assert [resource for _, resource in again] == [resource for _, resource in changes]


def test_a_refused_deployment_reaches_the_sdk_as_arms_error(local, infra, params):
    bad = {**params, "registrySku": {"value": "Gold"}}
    with pytest.raises(Exception, match="InvalidTemplate"):
        infra.deploy(TEMPLATE, bad)


def test_recorded_resources_are_read_and_listed_on_their_arm_paths(local, infra, params):
    arm, server = local
    infra.deploy(TEMPLATE, params)
    client = server.client
    query = {"api-version": "2026-02-01"}
    [vault] = arm.store.by_type("Microsoft.KeyVault/vaults")
    listed = client.get(f"{GROUP_ID}/providers/Microsoft.KeyVault/vaults", params=query)
    assert listed.status_code == 200 and listed.json() == {"value": [vault.body]}
    secret = client.get(f"{vault.id}/secrets/prefect-api-key", params=query)
    assert secret.status_code == 200 and secret.json()["name"] == "prefect-api-key"
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
    assert [a["properties"]["scope"] for a in on_vault.json()["value"]] == [vault.id]
    roles = client.get(
        f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions",
        params={"api-version": "2022-04-01"},
    )
    assert len(roles.json()["value"]) == 1
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
