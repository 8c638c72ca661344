"""Container group profiles, standby pools and claims on local ACI, reached by azure-mgmt-resource's
generic `resources.*_by_id` calls at Azure's api-versions, with groups that run nothing
(FakeGroups) and the pools' controller not started: every claim finds the pool empty. What needs
running members (hand-out, refill, config map files) is in test_standby_pools.py."""

import json

import pytest
from azure.core.exceptions import HttpResponseError
from azure.identity import ManagedIdentityCredential

from prefect_aci.local_aci.app import MANAGEMENT
from prefect_aci.local_aci.authorization import MANAGED_IDENTITY_OPERATOR
from tests.local_aci.acr_helpers import IssuedCredential
from tests.local_aci.arm_helpers import GROUP, GROUP_ID
from tests.local_aci.standby_helpers import (
    ACI_CONTRIBUTOR,
    GROUPS_API,
    POOL_CONTRIBUTOR,
    POOL_ID,
    POOLS_API,
    PROFILE_ID,
    PROFILES_API,
    claim,
    counts,
    group_id,
    pool,
    profile,
    resources,
)
from tests.local_azure_helpers import local_azure, start_local

IMAGE = "prefectacr1.azurecr.io/prefect-aci@sha256:" + "2" * 64


@pytest.fixture
def local(tmp_path, monkeypatch):
    found = start_local(tmp_path, local_azure())
    for name, value in found.identity_env().items():
        monkeypatch.setenv(name, value)
    yield found
    found.close()


@pytest.fixture
def client(local):
    return resources(ManagedIdentityCredential(), local.transport())


def _get(local, path: str, api_version: str) -> tuple[int, dict]:
    token = ManagedIdentityCredential().get_token(f"{MANAGEMENT}/.default").token
    answer = local.server.client.get(
        path, params={"api-version": api_version}, headers={"Authorization": f"Bearer {token}"}
    )
    return answer.status_code, answer.json() if answer.content else {}


def _with_profile_and_pool(client, capacity: int = 0) -> None:
    client.resources.begin_create_or_update_by_id(
        PROFILE_ID, PROFILES_API, profile(IMAGE, ["/bin/sleep", "600"])
    ).result()
    client.resources.begin_create_or_update_by_id(POOL_ID, POOLS_API, pool(capacity)).result()


def test_each_profile_write_is_a_new_revision_and_each_revision_is_served(local, client):
    created = client.resources.begin_create_or_update_by_id(
        PROFILE_ID, PROFILES_API, profile(IMAGE, ["/bin/sleep", "600"])
    ).result()
    assert created.properties["revision"] == 1
    patched = client.resources.begin_update_by_id(
        PROFILE_ID, PROFILES_API, {"tags": {"purpose": "flow-runs"}}
    ).result()
    assert patched.properties["revision"] == 2
    assert patched.properties["registeredRevisions"] == [1, 2]
    assert patched.tags == {"purpose": "flow-runs"}
    status, listed = _get(local, f"{PROFILE_ID}/revisions", PROFILES_API)
    assert status == 200
    assert [r["properties"]["revision"] for r in listed["value"]] == [1, 2]
    status, first = _get(local, f"{PROFILE_ID}/revisions/1", PROFILES_API)
    assert status == 200 and "tags" not in first
    assert first["properties"]["containers"][0]["properties"]["image"] == IMAGE
    assert _get(local, f"{PROFILE_ID}/revisions/3", PROFILES_API)[0] == 404


def test_profiles_are_listed_and_deleted_with_their_revisions(local, client):
    _with_profile_and_pool(client)
    listed = client.resources.list_by_resource_group(
        GROUP, filter="resourceType eq 'Microsoft.ContainerInstance/containerGroupProfiles'"
    )
    assert [r.id for r in listed] == [PROFILE_ID]
    client.resources.begin_delete_by_id(PROFILE_ID, PROFILES_API).result()
    assert _get(local, PROFILE_ID, PROFILES_API)[0] == 404
    assert _get(local, f"{PROFILE_ID}/revisions/1", PROFILES_API)[0] == 404


def test_a_pool_put_is_long_running_and_its_runtime_view_counts_by_state(local, client):
    _with_profile_and_pool(client, capacity=3)
    [put] = local.of("PUT", "/standbyContainerGroupPools/")
    operations = local.of("GET", "/operationStatuses/")
    assert operations, "the SDK polled the pool's Azure-AsyncOperation"
    created = client.resources.get_by_id(POOL_ID, POOLS_API)
    assert created.properties["provisioningState"] == "Succeeded"
    assert created.properties["elasticityProfile"]["maxReadyCapacity"] == 3
    status, view = _get(local, f"{POOL_ID}/runtimeViews/latest", POOLS_API)
    assert status == 200
    # The controller is not started here: nothing is ready yet.
    assert counts(view) == {"Running": 0, "Creating": 0, "Deleting": 0}
    assert view["properties"]["status"]["code"] == "HealthState/healthy"
    assert _get(local, f"{POOL_ID}/runtimeViews/other", POOLS_API)[0] == 404
    assert put.query["api-version"] == POOLS_API


def test_a_pool_patch_changes_its_capacity_and_a_delete_is_long_running(local, client):
    _with_profile_and_pool(client, capacity=1)
    patched = client.resources.begin_update_by_id(
        POOL_ID, POOLS_API, {"properties": {"elasticityProfile": {"maxReadyCapacity": 4}}}
    ).result()
    assert patched.properties["elasticityProfile"]["maxReadyCapacity"] == 4
    assert patched.properties["containerGroupProperties"]["containerGroupProfile"]["id"]
    client.resources.begin_delete_by_id(POOL_ID, POOLS_API).result()
    assert _get(local, POOL_ID, POOLS_API)[0] == 404


def test_a_pool_beyond_its_schema_or_capacity_bound_is_refused(local, client):
    _with_profile_and_pool(client)
    body = pool(1).serialize()
    del body["properties"]["elasticityProfile"]
    with pytest.raises(HttpResponseError) as refused:
        client.resources.begin_create_or_update_by_id(POOL_ID, POOLS_API, body).result()
    assert refused.value.status_code == 400
    assert refused.value.error.code == "InvalidRequestContent"
    with pytest.raises(HttpResponseError) as too_big:
        client.resources.begin_create_or_update_by_id(POOL_ID, POOLS_API, pool(2001)).result()
    assert too_big.value.status_code == 400


@pytest.mark.parametrize(
    "extra",
    [
        {"image": "nginx"},
        {"environmentVariables": [{"name": "A", "value": "b"}]},
        {"command": ["sleep", "1"]},
        {"ports": [{"port": 80}]},
    ],
    ids=["image", "environment", "command", "ports"],
)
def test_a_claim_with_more_than_config_maps_gets_azures_bad_request(local, client, extra):
    _with_profile_and_pool(client)
    with pytest.raises(HttpResponseError) as refused:
        client.resources.begin_create_or_update_by_id(
            group_id("run-1"), GROUPS_API, claim({"A": "b"}, **extra)
        ).result()
    assert refused.value.status_code == 400
    assert refused.value.error.code == "BadRequest"
    assert "other than config map are not allowed" in refused.value.error.message
    assert local.groups.created == []


def test_a_claim_with_group_level_properties_gets_azures_bad_request(local, client):
    _with_profile_and_pool(client)
    body = claim({"A": "b"}).serialize()
    body["properties"]["ipAddress"] = {"type": "Public", "ports": [{"port": 80}]}
    with pytest.raises(HttpResponseError) as refused:
        client.resources.begin_create_or_update_by_id(group_id("run-1"), GROUPS_API, body).result()
    assert refused.value.status_code == 400 and refused.value.error.code == "BadRequest"


def test_with_none_ready_a_claim_is_a_create_from_the_profile(local, client):
    _with_profile_and_pool(client)
    worker = local.add_identity("job")
    client.resources.begin_create_or_update_by_id(
        group_id("run-1"), GROUPS_API, claim({"PREFECT__FLOW_RUN_ID": "abc"}, worker.resource_id)
    ).result()
    [created] = local.groups.created
    container = created["properties"]["containers"][0]["properties"]
    assert container["image"] == IMAGE and container["command"] == ["/bin/sleep", "600"]
    assert container["configMap"] == {"keyValuePairs": {"PREFECT__FLOW_RUN_ID": "abc"}}
    assert list(created["identity"]["userAssignedIdentities"]) == [worker.resource_id]
    got = client.resources.get_by_id(group_id("run-1"), GROUPS_API)
    assert got.properties["isCreatedFromStandbyPool"] is False
    assert got.properties["containerGroupProfile"] == {"id": PROFILE_ID, "revision": 1}
    shown = got.properties["containers"][0]["properties"]
    assert shown["configMap"] == {"keyValuePairs": {"PREFECT__FLOW_RUN_ID": "abc"}}


def test_is_created_from_standby_pool_and_config_maps_show_only_at_api_versions_that_have_them(
    local, client
):
    _with_profile_and_pool(client)
    client.resources.begin_create_or_update_by_id(
        group_id("run-1"), GROUPS_API, claim({"A": "b"})
    ).result()
    old = client.resources.get_by_id(group_id("run-1"), "2023-05-01")
    assert "isCreatedFromStandbyPool" not in old.properties
    assert "containerGroupProfile" not in old.properties
    assert "configMap" not in old.properties["containers"][0]["properties"]


def test_with_none_ready_a_claim_that_may_not_fall_back_fails(local, client):
    _with_profile_and_pool(client)
    with pytest.raises(HttpResponseError) as refused:
        client.resources.begin_create_or_update_by_id(
            group_id("run-1"), GROUPS_API, claim({"A": "b"}, fail_on_reuse_failure=True)
        ).result()
    # Local's choice of error: Azure documents none.
    assert refused.value.status_code == 409
    assert refused.value.error.code == "StandbyPoolEmpty"
    assert local.groups.created == []


def test_a_claim_is_held_to_acis_group_name_rule(local, client):
    _with_profile_and_pool(client)
    with pytest.raises(HttpResponseError) as refused:
        client.resources.begin_create_or_update_by_id(
            group_id("Run--1"), GROUPS_API, claim({"A": "b"})
        ).result()
    assert refused.value.status_code == 400
    assert refused.value.error.code == "ContainerGroupNameInvalid"


def test_a_claim_of_a_revision_the_profile_does_not_have_is_refused(local, client):
    _with_profile_and_pool(client)
    with pytest.raises(HttpResponseError) as refused:
        client.resources.begin_create_or_update_by_id(
            group_id("run-1"), GROUPS_API, claim({"A": "b"}, revision=7)
        ).result()
    assert refused.value.status_code == 400
    assert "no revision 7" in refused.value.error.message


def test_a_claim_needs_read_on_the_profile_as_a_linked_check(local, client):
    _with_profile_and_pool(client)
    job = local.add_identity("job")
    worker = local.add_identity("worker")
    local.add_role_assignment(worker.principal_id, ACI_CONTRIBUTOR, GROUP_ID)
    local.add_role_assignment(worker.principal_id, MANAGED_IDENTITY_OPERATOR, job.resource_id)
    as_worker = resources(IssuedCredential(local.issuer, worker), local.transport())
    with pytest.raises(HttpResponseError) as refused:
        as_worker.resources.begin_create_or_update_by_id(
            group_id("run-1"), GROUPS_API, claim({"A": "b"}, job.resource_id)
        ).result()
    assert refused.value.status_code == 403
    assert refused.value.error.code == "LinkedAuthorizationFailed"
    assert "containerGroupProfiles/read" in refused.value.error.message
    local.add_role_assignment(worker.principal_id, POOL_CONTRIBUTOR, PROFILE_ID)
    as_worker.resources.begin_create_or_update_by_id(
        group_id("run-1"), GROUPS_API, claim({"A": "b"}, job.resource_id)
    ).result()
    assert [g["name"] for g in local.groups.created] == ["run-1"]


def test_a_claim_still_needs_to_assign_its_identity(local, client):
    _with_profile_and_pool(client)
    job = local.add_identity("job")
    worker = local.add_identity("worker")
    local.add_role_assignment(worker.principal_id, ACI_CONTRIBUTOR, GROUP_ID)
    local.add_role_assignment(worker.principal_id, POOL_CONTRIBUTOR, GROUP_ID)
    as_worker = resources(IssuedCredential(local.issuer, worker), local.transport())
    with pytest.raises(HttpResponseError) as refused:
        as_worker.resources.begin_create_or_update_by_id(
            group_id("run-1"), GROUPS_API, claim({"A": "b"}, job.resource_id)
        ).result()
    assert refused.value.error.code == "LinkedAuthorizationFailed"
    assert "userAssignedIdentities/assign/action" in refused.value.error.message


def test_profile_and_pool_deploy_from_a_template_and_a_deployed_claim_is_a_claim(local, client):
    provider = local.config.standby_pool_provider_principal_id
    template = {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "parameters": {"providerPrincipalId": {"type": "string"}},
        "resources": [
            {
                "type": "Microsoft.ContainerInstance/containerGroupProfiles",
                "apiVersion": PROFILES_API,
                "name": "flow-run",
                "location": "westeurope",
                "properties": profile(IMAGE, ["/bin/sleep", "600"]).properties,
            },
            {
                "type": "Microsoft.Authorization/roleAssignments",
                "apiVersion": "2022-04-01",
                "name": "[guid(resourceGroup().id, parameters('providerPrincipalId'), 'aci')]",
                "properties": {
                    "roleDefinitionId": f"[subscriptionResourceId('Microsoft.Authorization/"
                    f"roleDefinitions', '{ACI_CONTRIBUTOR}')]",
                    "principalId": "[parameters('providerPrincipalId')]",
                    "principalType": "ServicePrincipal",
                },
            },
            {
                "type": "Microsoft.StandbyPool/standbyContainerGroupPools",
                "apiVersion": POOLS_API,
                "name": "warm-pool",
                "location": "westeurope",
                "dependsOn": [
                    "[resourceId('Microsoft.ContainerInstance/containerGroupProfiles', 'flow-run')]"
                ],
                "properties": pool(2).properties,
            },
            {
                "type": "Microsoft.ContainerInstance/containerGroups",
                "apiVersion": GROUPS_API,
                "name": "run-1",
                "location": "westeurope",
                "comments": "The deployment's, not the claim's: allowed.",
                "dependsOn": [
                    "[resourceId('Microsoft.StandbyPool/standbyContainerGroupPools', 'warm-pool')]"
                ],
                "properties": claim({"PREFECT__FLOW_RUN_ID": "abc"}).properties,
            },
        ],
    }
    client.deployments.begin_create_or_update(
        GROUP,
        "standby",
        {
            "properties": {
                "mode": "Incremental",
                "template": template,
                "parameters": {"providerPrincipalId": {"value": provider}},
            }
        },
    ).result()
    assert client.resources.get_by_id(PROFILE_ID, PROFILES_API).properties["revision"] == 1
    assert client.resources.get_by_id(POOL_ID, POOLS_API).properties["provisioningState"]
    [created] = local.groups.created
    assert created["properties"]["isCreatedFromStandbyPool"] is False
    assert created["properties"]["containers"][0]["properties"]["image"] == IMAGE


def test_a_deployed_claim_with_more_than_config_maps_fails_the_deployment(local, client):
    _with_profile_and_pool(client)
    body = claim({"A": "b"}, image="nginx").serialize()
    template = {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "resources": [
            {
                "type": "Microsoft.ContainerInstance/containerGroups",
                "apiVersion": GROUPS_API,
                "name": "run-1",
                **body,
            }
        ],
    }
    poller = client.deployments.begin_create_or_update(
        GROUP, "claim", {"properties": {"mode": "Incremental", "template": template}}
    )
    with pytest.raises(HttpResponseError):
        poller.result()
    failed = client.deployments.get(GROUP, "claim")
    assert failed.properties.provisioning_state == "Failed"
    assert "other than config map" in json.dumps(failed.properties.error.as_dict())


def test_the_standby_pool_provider_is_a_principal_graph_names(local):
    provider = local.config.standby_pool_provider_principal_id
    token = ManagedIdentityCredential().get_token("https://graph.microsoft.com/.default").token
    answer = local.server.client.post(
        "https://graph.microsoft.com/v1.0/directoryObjects/getByIds",
        json={"ids": [provider]},
        headers={"Authorization": f"Bearer {token}"},
    )
    [found] = answer.json()["value"]
    assert found["displayName"] == "Standby Pool Resource Provider"


def test_a_profiles_secure_values_are_never_shown_and_reach_the_groups_made_from_it(local, client):
    secured = profile(IMAGE, ["/bin/sleep", "600"])
    secured.properties["containers"][0]["properties"]["environmentVariables"] = [
        {"name": "PREFECT_API_KEY", "secureValue": "pnu_secret"},
        {"name": "PREFECT_API_URL", "value": "https://api.example"},
    ]
    client.resources.begin_create_or_update_by_id(PROFILE_ID, PROFILES_API, secured).result()
    client.resources.begin_update_by_id(PROFILE_ID, PROFILES_API, {"tags": {"a": "b"}}).result()
    client.resources.begin_create_or_update_by_id(POOL_ID, POOLS_API, pool(0)).result()
    for path in (PROFILE_ID, f"{PROFILE_ID}/revisions/1", f"{PROFILE_ID}/revisions/2"):
        status, body = _get(local, path, PROFILES_API)
        assert status == 200 and "pnu_secret" not in json.dumps(body)
    client.resources.begin_create_or_update_by_id(
        group_id("run-1"), GROUPS_API, claim({"A": "b"}, revision=2)
    ).result()
    [created] = local.groups.created
    env = created["properties"]["containers"][0]["properties"]["environmentVariables"]
    assert {"name": "PREFECT_API_KEY", "secureValue": "pnu_secret"} in env
