"""What the Azure CLI asks of local Azure beyond the SDKs' calls, answered in Azure's shapes: the
cloud's metadata endpoint (`az cloud register`), tenants and subscriptions (`az login`), provider
registrations, resource groups, role definitions and assignments as the Authorization provider
lists them (`az role assignment list`), Microsoft Graph's getByIds (the principals' names), Key
Vault's secret list, and Azure's error for what local Azure does not serve. Requests go to the
app in the test process with tokens of local Azure's issuer; tests/demo/test_az.py runs the real
`az` on the demo stack."""

import asyncio

import pytest

from prefect_aci.local_aci import proxy
from prefect_aci.local_aci.authorization import (
    KEY_VAULT_SECRETS_USER,
    OWNER,
    READER,
    definition_id,
)
from prefect_aci.local_aci.resources import ROLE_DEFINITIONS
from tests.local_aci.arm_helpers import DEPLOYER, GROUP, GROUP_ID, SUBSCRIPTION, TENANT
from tests.local_azure_helpers import DEPLOYER_IDENTITY, Local, start_local

API = {"api-version": "2022-12-01"}
SUBSCRIPTION_ID = f"/subscriptions/{SUBSCRIPTION}"
ASSIGNMENTS = "providers/Microsoft.Authorization/roleAssignments"


@pytest.fixture
def local(tmp_path):
    started = start_local(tmp_path)
    yield started
    started.close()


def token(local: Local, resource: str, principal: str = DEPLOYER, client: str = "") -> str:
    client = client or DEPLOYER_IDENTITY.client_id
    return local.issuer.issue(resource, client, principal).token


def get(local: Local, path: str, resource: str = "https://management.core.windows.net/", **kw):
    params = kw.pop("params", API)
    headers = {"Authorization": f"Bearer {token(local, resource, **kw)}"}
    return local.server.client.get(path, params=params, headers=headers)


def test_the_metadata_endpoint_answers_unsigned_with_resource_manager_where_it_was_asked(local):
    answer = local.server.client.get(
        "https://127.0.0.1:8443/metadata/endpoints", params={"api-version": "2022-09-01"}
    )
    assert answer.status_code == 200
    body = answer.json()
    assert body["resourceManager"] == "https://127.0.0.1:8443/"
    assert body["authentication"]["audiences"] == [
        "https://management.core.windows.net/",
        "https://management.azure.com/",
    ]
    assert body["authentication"]["loginEndpoint"] == "https://login.microsoftonline.com"
    assert body["suffixes"]["keyVaultDns"] == "vault.azure.net"
    assert body["suffixes"]["acrLoginServer"] == "azurecr.io"
    # az cloud register appends the path to an endpoint that may end with a slash.
    doubled = local.server.client.get(
        "https://127.0.0.1:8443//metadata/endpoints", params={"api-version": "2022-09-01"}
    )
    assert doubled.status_code == 200
    missing = local.server.client.get("/metadata/endpoints")
    assert missing.json()["error"]["code"] == "MissingApiVersionParameter"


def test_tokens_for_either_of_resource_managers_audiences_are_taken(local):
    for audience in ("https://management.core.windows.net/", "https://management.azure.com/"):
        answer = get(local, GROUP_ID, resource=audience, params={"api-version": "x"})
        assert answer.status_code == 200, audience
    other = get(local, GROUP_ID, resource="https://vault.azure.net", params={"api-version": "x"})
    assert other.status_code == 401
    assert other.json()["error"]["code"] == "InvalidAuthenticationToken"


def test_a_caller_with_a_role_in_the_subscription_sees_the_tenant_and_the_subscription(local):
    tenants = get(local, "/tenants").json()
    assert tenants["value"][0]["tenantId"] == TENANT
    assert tenants["value"][0]["id"] == f"/tenants/{TENANT}"
    listed = get(local, "/subscriptions").json()
    assert listed["count"] == {"type": "Total", "value": 1}
    [found] = listed["value"]
    assert found["subscriptionId"] == SUBSCRIPTION and found["tenantId"] == TENANT
    assert found["state"] == "Enabled" and found["id"] == SUBSCRIPTION_ID
    assert get(local, SUBSCRIPTION_ID).json() == found
    groups = get(local, f"{SUBSCRIPTION_ID}/resourcegroups").json()["value"]
    assert [g["name"] for g in groups] == [GROUP]


def test_a_caller_with_no_role_sees_no_subscription_and_one_with_a_vault_role_no_group(local):
    stranger = local.add_identity("stranger")
    assert get(local, "/subscriptions", principal=stranger.principal_id).json()["value"] == []
    vault = local.add_vault("prefectkv1", {"demo": "x"})
    local.add_role_assignment(stranger.principal_id, KEY_VAULT_SECRETS_USER, vault.id)
    # A role on a vault shows the subscription, not the resource group it may not read.
    assert get(local, "/subscriptions", principal=stranger.principal_id).json()["value"]
    groups = get(local, f"{SUBSCRIPTION_ID}/resourcegroups", principal=stranger.principal_id)
    assert groups.json() == {"value": []}
    other = local.add_identity("other")
    missing = get(local, SUBSCRIPTION_ID, principal=other.principal_id)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "SubscriptionNotFound"
    assert local.server.client.get("/subscriptions", params=API).status_code == 401


def test_providers_are_registered_with_the_types_local_resource_manager_deploys(local):
    listed = get(local, f"{SUBSCRIPTION_ID}/providers").json()["value"]
    by_namespace = {p["namespace"]: p for p in listed}
    aci = by_namespace["Microsoft.ContainerInstance"]
    assert aci["registrationState"] == "Registered"
    assert aci["id"] == f"{SUBSCRIPTION_ID}/providers/Microsoft.ContainerInstance"
    groups = next(t for t in aci["resourceTypes"] if t["resourceType"] == "containerGroups")
    assert "2023-05-01" in groups["apiVersions"] and groups["locations"] == ["westeurope"]
    assert {"Microsoft.Resources", "Microsoft.KeyVault", "Microsoft.ManagedIdentity"} <= set(
        by_namespace
    )
    one = get(local, f"{SUBSCRIPTION_ID}/providers/microsoft.keyvault").json()
    assert one == by_namespace["Microsoft.KeyVault"]
    unknown = get(local, f"{SUBSCRIPTION_ID}/providers/Microsoft.Compute")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "InvalidResourceNamespace"


def test_role_definitions_listed_at_a_scope_are_the_built_in_ones_and_the_custom_assignable(
    local,
):
    custom = "3a5a1c5e-8d7b-4e5f-9a1b-2c3d4e5f6a7b"
    local.deploy(
        {
            "type": ROLE_DEFINITIONS,
            "name": custom,
            "scope": SUBSCRIPTION_ID,
            "properties": {"roleName": "Prefect ACI worker (x)", "assignableScopes": [GROUP_ID]},
        }
    )
    path = f"{GROUP_ID}/providers/Microsoft.Authorization/roleDefinitions"
    listed = get(local, path, params={"api-version": "2022-05-01-preview"}).json()["value"]
    by_name = {r["properties"]["roleName"]: r for r in listed}
    assert by_name["Owner"]["id"] == definition_id(SUBSCRIPTION, OWNER)
    assert by_name["Owner"]["properties"]["type"] == "BuiltInRole"
    assert by_name["Prefect ACI worker (x)"]["id"] == definition_id(SUBSCRIPTION, custom)
    assert "source" not in by_name["Owner"]
    at_subscription = get(
        local,
        f"{SUBSCRIPTION_ID}/providers/Microsoft.Authorization/roleDefinitions",
        params={"api-version": "2022-05-01-preview"},
    ).json()["value"]
    at_other_group = get(
        local,
        f"{SUBSCRIPTION_ID}/resourceGroups/other/providers/Microsoft.Authorization/roleDefinitions",
        params={"api-version": "2022-05-01-preview"},
    )
    # The custom role is assignable on its group (and so listed above it), not on another.
    assert "Prefect ACI worker (x)" in {r["properties"]["roleName"] for r in at_subscription}
    assert at_other_group.json()["error"]["code"] == "ResourceGroupNotFound"
    assert "Owner" in {r["properties"]["roleName"] for r in at_subscription}
    named = get(
        local,
        path,
        params={"api-version": "2022-05-01-preview", "$filter": "roleName eq 'Reader'"},
    ).json()["value"]
    assert [r["id"] for r in named] == [definition_id(SUBSCRIPTION, READER)]


def test_role_assignments_at_scope_are_those_at_and_above_it_the_stacks_own_included(local):
    job = local.add_identity("prefect-job-id")
    vault = local.add_vault("prefectkv1", {"demo": "x"})
    on_group = local.add_role_assignment(job.principal_id, READER, GROUP_ID)
    on_vault = local.add_role_assignment(job.principal_id, KEY_VAULT_SECRETS_USER, vault.id)
    path = f"{GROUP_ID}/{ASSIGNMENTS}"
    version = {"api-version": "2022-04-01"}
    at_scope = get(local, path, params={**version, "$filter": "atScope()"}).json()["value"]
    principals = {(a["properties"]["principalId"], a["properties"]["scope"]) for a in at_scope}
    assert (DEPLOYER, GROUP_ID) in principals  # the deployer's Owner, in the stack's config
    assert {a["id"] for a in at_scope} >= {on_group.id}
    assert on_vault.id not in {a["id"] for a in at_scope}
    everything = get(local, path, params=version).json()["value"]
    assert on_vault.id in {a["id"] for a in everything}
    jobs = get(
        local, path, params={**version, "$filter": f"principalId eq '{job.principal_id}'"}
    ).json()["value"]
    assert {a["id"] for a in jobs} == {on_group.id, on_vault.id}
    refused = get(local, path, params={**version, "$filter": "roleName eq 'x'"})
    assert refused.status_code == 404 and "not served by local Azure" in refused.text


def test_a_list_across_the_subscription_needs_read_on_the_subscription(local):
    """The deployer is Owner of the resource group only; Azure checks a list across the
    subscription on the subscription."""
    for path in (
        "providers/Microsoft.ContainerInstance/containerGroups",
        "providers/Microsoft.ManagedIdentity/userAssignedIdentities",
        ASSIGNMENTS,
    ):
        refused = get(local, f"{SUBSCRIPTION_ID}/{path}", params={"api-version": "2023-05-01"})
        assert refused.status_code == 403, path
        assert refused.json()["error"]["code"] == "AuthorizationFailed"
        assert f"over scope '{SUBSCRIPTION_ID}'" in refused.json()["error"]["message"]


def test_a_request_local_azure_does_not_serve_gets_arms_error_saying_so(local):
    path = f"{GROUP_ID}/providers/Microsoft.Compute/virtualMachines"
    answer = get(local, path, params={"api-version": "2024-07-01"})
    assert answer.status_code == 404
    error = answer.json()["error"]
    assert error["code"] == "InvalidResourceType"
    assert error["message"].startswith(f"GET {path} is not served by local Azure")
    posted = local.server.client.post("/tenants", params=API)
    assert posted.json()["error"]["code"] == "InvalidResourceType"


def test_key_vault_lists_secret_ids_and_attributes_never_values(local):
    job = local.add_identity("prefect-job-id")
    vault = local.add_vault("prefectkv1", {"demo-secret": "never-listed", "other": "x"})
    local.add_role_assignment(job.principal_id, KEY_VAULT_SECRETS_USER, vault.id)
    host = "https://prefectkv1.vault.azure.net"
    bearer = token(local, "https://vault.azure.net", job.principal_id, job.client_id)
    answer = local.server.client.get(
        f"{host}/secrets",
        params={"api-version": "7.4", "maxresults": "1"},
        headers={"Authorization": f"Bearer {bearer}"},
    )
    assert answer.status_code == 200
    body = answer.json()
    assert body["value"] == [
        {
            "id": f"{host}/secrets/demo-secret",
            "attributes": body["value"][0]["attributes"],
            "tags": {},
        }
    ]
    assert body["value"][0]["attributes"]["enabled"] is True
    assert body["nextLink"].startswith(f"{host}/secrets?")
    assert "never-listed" not in answer.text
    # The deployer (Owner: no data actions) may not list them.
    refused = local.server.client.get(
        f"{host}/secrets",
        params={"api-version": "7.4"},
        headers={"Authorization": f"Bearer {token(local, 'https://vault.azure.net')}"},
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["innererror"]["code"] == "ForbiddenByRbac"


def test_graph_names_the_principals_as_managed_identities_service_principals(local):
    job = local.add_identity("prefect-job-id")
    graph = "https://graph.microsoft.com"
    answer = local.server.client.post(
        f"{graph}/v1.0/directoryObjects/getByIds",
        json={"ids": [job.principal_id, "00000000-0000-0000-0000-000000000000"]},
        headers={"Authorization": f"Bearer {token(local, f'{graph}/')}"},
    )
    assert answer.status_code == 200
    [found] = answer.json()["value"]
    assert found["@odata.type"] == "#microsoft.graph.servicePrincipal"
    assert (found["id"], found["appId"], found["displayName"]) == (
        job.principal_id,
        job.client_id,
        "prefect-job-id",
    )
    assert found["servicePrincipalType"] == "ManagedIdentity"
    users = local.server.client.get(
        f"{graph}/v1.0/users", headers={"Authorization": f"Bearer {token(local, graph)}"}
    )
    assert users.status_code == 404
    assert "not served by local Azure" in users.json()["error"]["message"]
    unsigned = local.server.client.post(f"{graph}/v1.0/directoryObjects/getByIds", json={})
    assert unsigned.status_code == 401


async def _through(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer


def test_the_proxy_tunnels_to_the_stand_in_for_azures_names_only():
    async def scenario() -> tuple[bytes, bytes, bytes, bytes]:
        async def upstream(reader, writer):
            writer.write(b"stand-in here")
            await writer.drain()
            writer.close()

        target = await asyncio.start_server(upstream, "127.0.0.1", 0)
        target_port = target.sockets[0].getsockname()[1]
        tunnels = await proxy.serve("127.0.0.1", 0, ("127.0.0.1", target_port))
        port = tunnels.sockets[0].getsockname()[1]
        async with target, tunnels:
            vault = await _through(port, b"CONNECT prefectkv1.vault.azure.net:443 HTTP/1.1\r\n\r\n")
            graph = await _through(port, b"CONNECT graph.microsoft.com:443 HTTP/1.1\r\n\r\n")
            other = await _through(port, b"CONNECT pypi.org:443 HTTP/1.1\r\n\r\n")
            plain = await _through(port, b"GET http://management.azure.com/ HTTP/1.1\r\n\r\n")
        return vault, graph, other, plain

    vault, graph, other, plain = asyncio.run(scenario())
    assert vault.startswith(b"HTTP/1.1 200 Connection established\r\n\r\n")
    assert vault.endswith(b"stand-in here")
    assert graph.startswith(b"HTTP/1.1 200")
    assert other.startswith(b"HTTP/1.1 403 Forbidden")
    assert plain.startswith(b"HTTP/1.1 403 Forbidden")


def test_resources_are_listed_in_the_generic_shape_as_far_as_the_caller_may_read_them(local):
    job = local.add_identity("prefect-job-id")
    vault = local.add_vault("prefectkv1", {"demo": "x"})
    local.add_role_assignment(job.principal_id, KEY_VAULT_SECRETS_USER, vault.id)
    local.add_group("run-abc", {"prefect-job": {}})
    listed = get(local, f"{SUBSCRIPTION_ID}/resources").json()["value"]
    by_type = {r["type"]: r for r in listed}
    # Top-level resources only: no vault secret, no role assignment.
    assert set(by_type) == {
        "Microsoft.ContainerInstance/containerGroups",
        "Microsoft.KeyVault/vaults",
        "Microsoft.ManagedIdentity/userAssignedIdentities",
    }
    assert by_type["Microsoft.KeyVault/vaults"] == {
        "id": vault.id,
        "name": "prefectkv1",
        "type": "Microsoft.KeyVault/vaults",
        "location": "westeurope",
    }
    vaults = get(
        local,
        f"{SUBSCRIPTION_ID}/resources",
        params={
            **API,
            "$filter": f"resourceGroup eq '{GROUP}' and resourceType eq '{vault.type}'",
        },
    ).json()["value"]
    assert [r["id"] for r in vaults] == [vault.id]
    in_group = get(local, f"{GROUP_ID}/resources").json()["value"]
    assert {r["id"] for r in in_group} == {r["id"] for r in listed}
    # The job identity may read none of them (Key Vault Secrets User has data actions only).
    assert get(local, f"{SUBSCRIPTION_ID}/resources", principal=job.principal_id).json() == {
        "value": []
    }
