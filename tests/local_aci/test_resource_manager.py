"""Local Resource Manager deploys arm/azuredeploy.json whole, unmodified, with the parameters
`prefect-aci azure deploy` sends: each resource checked against Azure's schema for its type and
apiVersion, deployed in dependsOn (and reference()) order, recorded with its provider's GET shape,
outputs evaluated as `azure deploy` reads them, secure values never shown; bad templates and
parameter values refused with ARM's codes and messages; what-if answered. In-process: container
groups go to a stand-in for Groups (no Docker)."""

import copy
import json
import uuid

import pytest

from arm.deploy import WORKER_CONTAINER, WORKER_ROLE_SEED
from prefect_aci.core.arm_template import arm_guid
from prefect_aci.core.records import azure_record_from_outputs
from prefect_aci.local_aci.expressions import unique_string
from prefect_aci.local_aci.resource_manager import ArmError, ResourceManager
from prefect_aci.local_aci.resources import resource_request
from tests.local_aci.arm_helpers import (
    API_KEY,
    DEMO_SECRET,
    DEPLOYER,
    GROUP,
    GROUP_ID,
    GROUPS_TYPE,
    SCHEMAS,
    SUBSCRIPTION,
    TEMPLATE,
    TENANT,
    FakeGroups,
    deploy_parameters,
    deploy_settings,
)


@pytest.fixture
def params(monkeypatch) -> dict:
    return deploy_parameters(deploy_settings(monkeypatch))


@pytest.fixture
def events() -> list[str]:
    return []


@pytest.fixture
def arm(events) -> ResourceManager:
    manager = ResourceManager(SUBSCRIPTION, FakeGroups(events), SCHEMAS, tenant_id=TENANT)
    manager.store.listeners.append(lambda what, r: events.append(r.id.lower()))
    return manager


def request(template: dict, params: dict) -> dict:
    return {"properties": {"mode": "Incremental", "template": template, "parameters": params}}


def deploy(arm: ResourceManager, template: dict, params: dict, name: str = "prefect-aci-infra"):
    deployment = arm.create(GROUP, name, request(template, params), "westeurope")
    assert deployment.done.wait(30)
    return deployment


def refusal(arm: ResourceManager, template: dict, params: dict) -> ArmError:
    with pytest.raises(ArmError) as caught:
        arm.create(GROUP, "bad", request(template, params), "westeurope")
    return caught.value


def one(arm: ResourceManager, resource_type: str, name: str):
    [found] = [r for r in arm.store.by_type(resource_type) if r.body["name"] == name]
    return found


# -- the whole template ------------------------------------------------------------------------


def test_the_template_deploys_whole_and_its_outputs_make_the_azure_record(arm, params):
    deployment = deploy(arm, TEMPLATE, params)
    body = arm.body(deployment)
    assert body["properties"]["provisioningState"] == "Succeeded", body["properties"].get("error")
    # Every type of the template is there: recorded, or (the worker group) run by Groups; but the
    # standby pool's, which the template deploys only with standbyPoolSize above 0.
    recorded = {r.type for r in arm.store.resources.values()}
    deployed = [
        r for r in TEMPLATE["resources"] if "variables('standbyPool')" not in r.get("condition", "")
    ]
    assert {r["type"] for r in deployed} - recorded == {GROUPS_TYPE}
    [group] = arm.groups.created
    assert group["name"] == f"{params['prefix']['value']}-worker"
    outputs = body["properties"]["outputs"]
    assert all(
        set(out) == {"type", "value"}
        and out["type"] == ("Int" if name == "containerGroupProfileRevision" else "String")
        for name, out in outputs.items()
    )
    record = azure_record_from_outputs({name: out["value"] for name, out in outputs.items()})
    worker = one(arm, "Microsoft.ManagedIdentity/userAssignedIdentities", "prefect-worker-id")
    vault = arm.store.by_type("Microsoft.KeyVault/vaults")[0]
    assert record.worker_identity_client_id == worker.properties["clientId"]
    assert record.worker_identity_id == worker.id
    assert record.key_vault_uri == f"https://{vault.body['name']}.vault.azure.net/"
    assert record.registry_login_server.endswith(".azurecr.io")
    vnet = f"{GROUP_ID}/providers/Microsoft.Network/virtualNetworks/prefect-vnet"
    assert record.subnet_id == f"{vnet}/subnets/aci"
    assert outputs["storageBlobEndpoint"]["value"].endswith(".blob.core.windows.net/")
    # The worker runs as its identity: reference() answered from what was recorded.
    [container] = [c for c in group["properties"]["containers"] if c["name"] == WORKER_CONTAINER]
    env = {v["name"]: v for v in container["properties"]["environmentVariables"]}
    assert env["AZURE_CLIENT_ID"]["value"] == worker.properties["clientId"]


def test_secure_values_are_never_shown(arm, params):
    deployment = deploy(arm, TEMPLATE, params)
    shown = json.dumps(arm.body(deployment)) + json.dumps(
        [r.body for r in arm.store.resources.values()]
    )
    assert API_KEY not in shown and DEMO_SECRET not in shown
    assert arm.body(deployment)["properties"]["parameters"]["prefectApiKey"] == {
        "type": "SecureString"
    }
    # The vault's secret keeps its value beside its GET body, for the Key Vault stand-in.
    secret = one(arm, "Microsoft.KeyVault/vaults/secrets", "prefect-aci-demo-secret")
    assert secret.secret == DEMO_SECRET and "value" not in secret.properties


def test_resources_have_their_providers_get_shapes(arm, params):
    deploy(arm, TEMPLATE, params)
    job = one(arm, "Microsoft.ManagedIdentity/userAssignedIdentities", "prefect-job-id")
    assert job.body["location"] == "westeurope" and job.properties["tenantId"] == TENANT
    for key in ("principalId", "clientId"):
        uuid.UUID(job.properties[key])
    vault = arm.store.by_type("Microsoft.KeyVault/vaults")[0]
    assert vault.properties["provisioningState"] == "Succeeded"
    # The job identity's Key Vault role: an extension resource on the vault, with ARM's body.
    [assignment] = [
        r
        for r in arm.store.by_type("Microsoft.Authorization/roleAssignments")
        if r.properties["scope"] == vault.id
    ]
    assert assignment.id.startswith(f"{vault.id}/providers/Microsoft.Authorization/")
    assert assignment.properties["principalId"] == job.properties["principalId"]
    assert assignment.properties["principalType"] == "ServicePrincipal"
    assert assignment.properties["roleDefinitionId"] == (
        f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/"
        "4633458b-17de-408a-b874-0445c86b69e6"
    )
    assert "location" not in assignment.body and "provisioningState" not in assignment.properties
    # The custom role lives at the subscription, under the id arm/deploy.py looks for.
    [role] = [
        r
        for r in arm.store.by_type("Microsoft.Authorization/roleDefinitions")
        if r.id.endswith(arm_guid(GROUP_ID, WORKER_ROLE_SEED))
    ]
    assert role.id == (
        f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/"
        f"{arm_guid(GROUP_ID, WORKER_ROLE_SEED)}"
    )
    [permission] = role.properties["permissions"]
    assert "Microsoft.ContainerInstance/containerGroups/write" in permission["actions"]
    assert permission["dataActions"] == [] and role.properties["assignableScopes"] == [GROUP_ID]
    # The worker's assignment names the role as Azure does (at the subscription).
    worker_assignment = arm.store.get(
        f"{GROUP_ID}/providers/Microsoft.Authorization/roleAssignments/"
        f"{arm_guid(GROUP_ID, 'prefect-worker-id', arm_guid(GROUP_ID, WORKER_ROLE_SEED))}"
    )
    assert worker_assignment is not None
    assert worker_assignment.properties["roleDefinitionId"] == role.id
    # The deployer (signed in as a user) may upload flow code: its assignment says so.
    [upload] = [
        r
        for r in arm.store.by_type("Microsoft.Authorization/roleAssignments")
        if r.properties["principalId"] == DEPLOYER and "/containers/" in r.properties["scope"]
    ]
    assert upload.properties["principalType"] == "User"
    assert upload.properties["roleDefinitionId"].endswith("ba92f5b4-2d11-453d-a403-e96b0029c9fe")


def test_depends_on_and_reference_order_is_kept(arm, params, events):
    deploy(arm, TEMPLATE, params)
    [deployment] = arm.all_in(GROUP)
    position = {event: at for at, event in enumerate(events)}
    checked = 0
    for item in deployment.plan:
        for dependency in item.depends:
            before = deployment.plan[dependency].azure_id.lower()
            assert position[before] < position[item.azure_id.lower()], (before, item.azure_id)
            checked += 1
    assert checked > 20
    # The deployment's body lists them as ARM does.
    dependencies = arm.body(deployment)["properties"]["dependencies"]
    assert sum(len(d["dependsOn"]) for d in dependencies) == checked
    assert {"id", "resourceType", "resourceName"} <= set(dependencies[0]["dependsOn"][0])
    # The worker group comes after its role assignments (explicit) and identities (reference()).
    group = next(e for e in events if e.endswith("/containergroups/prefect-worker"))
    assert all(
        position[e] < position[group]
        for e in events
        if "/roleassignments/" in e
        and (e.startswith(GROUP_ID.lower() + "/providers/microsoft.authorization"))
    )


def test_reference_alone_orders_resources():
    events: list[str] = []
    arm = ResourceManager(SUBSCRIPTION, FakeGroups(events), SCHEMAS, tenant_id=TENANT)
    arm.store.listeners.append(lambda what, r: events.append(r.body["name"]))
    identity = "[resourceId('Microsoft.ManagedIdentity/userAssignedIdentities', 'id1')]"
    template = {
        "resources": [
            {
                "type": "Microsoft.Authorization/roleAssignments",
                "apiVersion": "2022-04-01",
                "name": "[guid('a')]",
                "properties": {
                    "roleDefinitionId": "[subscriptionResourceId("
                    "'Microsoft.Authorization/roleDefinitions', "
                    "'acdd72a7-3385-48ef-bd42-f606fba81ae7')]",
                    "principalId": f"[reference({identity[1:-1]}, '2024-11-30').principalId]",
                },
            },
            {
                "type": "Microsoft.ManagedIdentity/userAssignedIdentities",
                "apiVersion": "2024-11-30",
                "name": "id1",
                "location": "westeurope",
                "properties": {},
            },
        ]
    }
    deployment = deploy(arm, template, {})
    assert deployment.state == "Succeeded", deployment.error
    assert events == ["id1", arm_guid("a")]


def test_a_cycle_and_an_undefined_dependency_are_invalid_templates(arm):
    identity = {
        "type": "Microsoft.ManagedIdentity/userAssignedIdentities",
        "apiVersion": "2024-11-30",
        "location": "westeurope",
        "properties": {},
    }
    cycle = {
        "resources": [
            {**identity, "name": "a", "dependsOn": ["b"]},
            {**identity, "name": "b", "dependsOn": ["a"]},
        ]
    }
    error = refusal(arm, cycle, {})
    assert (error.status, error.code) == (400, "InvalidTemplate")
    assert "Circular dependency detected on resource" in str(error)
    missing = {"resources": [{**identity, "name": "a", "dependsOn": ["nowhere"]}]}
    assert "'nowhere' is not defined in the template" in str(refusal(arm, missing, {}))


def test_a_dependency_whose_condition_is_false_is_no_dependency(arm, params):
    params = {**params, "deployRegistry": {"value": False}}
    deployment = deploy(arm, TEMPLATE, params)
    assert deployment.state == "Succeeded", deployment.error
    assert arm.store.by_type("Microsoft.ContainerRegistry/registries") == []
    assert arm.body(deployment)["properties"]["outputs"]["registryLoginServer"]["value"] == ""


def test_deploying_again_keeps_what_the_providers_made(arm, params):
    deploy(arm, TEMPLATE, params)
    first = one(arm, "Microsoft.ManagedIdentity/userAssignedIdentities", "prefect-job-id")
    deploy(arm, TEMPLATE, params)
    again = one(arm, "Microsoft.ManagedIdentity/userAssignedIdentities", "prefect-job-id")
    assert again.properties == first.properties


# -- refused before anything is deployed --------------------------------------------------------


def test_a_schema_invalid_resource_fails_with_arms_error_shape(arm, params):
    template = copy.deepcopy(TEMPLATE)
    vault = next(r for r in template["resources"] if r["type"] == "Microsoft.KeyVault/vaults")
    vault["properties"]["enableRbacAuthorisation"] = vault["properties"].pop(
        "enableRbacAuthorization"
    )
    error = refusal(arm, template, params)
    assert (error.status, error.code) == (400, "InvalidTemplateDeployment")
    body = error.body()["error"]
    assert body["message"].startswith("The template deployment 'bad' is not valid according")
    [detail] = body["details"]
    assert detail["code"] == "InvalidRequestContent"
    assert "Could not find member 'enableRbacAuthorisation'" in detail["message"]
    assert detail["target"].endswith(f"/providers/Microsoft.KeyVault/vaults/{vault_name(arm)}")
    assert arm.store.resources == {} and arm.groups.created == []


def vault_name(arm: ResourceManager) -> str:
    return f"prefectkv{unique_string(GROUP_ID)}"


def test_a_wrong_type_found_only_after_evaluation_fails_too(arm, params):
    """The vault's retention is an int once evaluated; a string parameter would be caught by the
    parameter check first, so break the template's own literal instead."""
    template = copy.deepcopy(TEMPLATE)
    vault = next(r for r in template["resources"] if r["type"] == "Microsoft.KeyVault/vaults")
    vault["properties"]["enableSoftDelete"] = "yes"
    [detail] = refusal(arm, template, params).details
    assert "properties.enableSoftDelete" in detail["message"]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "registrySku",
            "Gold",
            "The provided value for the template parameter 'registrySku' is not valid. The value "
            "'Gold' is not part of the allowed value(s): 'Basic,Standard,Premium'.",
        ),
        (
            "prefix",
            "ab",
            "The provided value for the template parameter 'prefix' is not valid. Expected length "
            "to be greater than or equal to '3', actual length '2'.",
        ),
        (
            "softDeleteRetentionInDays",
            91,
            "The provided value for the template parameter 'softDeleteRetentionInDays' is not "
            "valid. Expected value to be less than or equal to '90', actual value '91'.",
        ),
        (
            "deployWorker",
            "true",
            "Template parameter 'deployWorker' was provided an invalid value. Expected a value of "
            "type 'bool', but received a value of type 'String'.",
        ),
    ],
)
def test_a_bad_parameter_value_fails_with_arms_message(arm, params, name, value, message):
    error = refusal(arm, TEMPLATE, {**params, name: {"value": value}})
    assert (error.status, error.code) == (400, "InvalidTemplate")
    assert message in str(error)


def test_reference_in_a_variable_is_refused_when_the_template_is_read(arm, params):
    template = copy.deepcopy(TEMPLATE)
    template["variables"]["workerClientId"] = (
        "[reference(resourceId('Microsoft.ManagedIdentity/userAssignedIdentities', "
        "variables('workerIdentityName')), '2024-11-30').clientId]"
    )
    error = refusal(arm, template, params)
    assert (error.status, error.code) == (400, "InvalidTemplate")
    assert (
        "The template variable 'workerClientId' is not valid: The template function 'reference' "
        "is not expected at this location."
    ) in str(error)


def test_every_variable_is_resolved_when_the_template_is_read_used_or_not(arm, params):
    template = copy.deepcopy(TEMPLATE)
    template["variables"]["unused"] = "[parameters('noSuchParameter')]"
    error = refusal(arm, template, params)
    assert error.code == "InvalidTemplate" and "'noSuchParameter' is not found" in str(error)


# -- what-if ------------------------------------------------------------------------------------


def test_what_if_creates_everything_first_then_nothing_changes_then_one_modify(arm, params):
    first = arm.what_if(GROUP, "prefect-aci-infra", request(TEMPLATE, params), "westeurope")
    changes = first.result["properties"]["changes"]
    assert {c["changeType"] for c in changes} == {"Create"}
    assert arm.store.resources == {} and arm.groups.created == []  # what-if deploys nothing
    planned = [c["resourceId"] for c in changes]
    deploy(arm, TEMPLATE, params)
    again = arm.what_if(GROUP, "prefect-aci-infra", request(TEMPLATE, params), "westeurope")
    assert {c["changeType"] for c in again.result["properties"]["changes"]} == {"NoChange"}
    assert [c["resourceId"] for c in again.result["properties"]["changes"]] == planned
    assert API_KEY not in json.dumps(again.result)
    changed = {**params, "registrySku": {"value": "Standard"}}
    modified = arm.what_if(GROUP, "prefect-aci-infra", request(TEMPLATE, changed), "westeurope")
    kinds = {
        c["resourceId"].rsplit("/", 2)[-2]: c["changeType"]
        for c in modified.result["properties"]["changes"]
        if c["changeType"] != "NoChange"
    }
    assert kinds == {"registries": "Modify"}
    assert arm.what_if_result(modified.id) is modified


# -- reading what was recorded -------------------------------------------------------------------


def test_recorded_resources_answer_get_and_list(arm, params):
    deploy(arm, TEMPLATE, params)
    vault = arm.store.by_type("Microsoft.KeyVault/vaults")[0]
    status, body = resource_request(vault.id, arm.store)
    assert status == 200 and body == vault.body
    status, body = resource_request(f"{vault.id}/secrets", arm.store)
    assert sorted(s["name"] for s in body["value"]) == [
        "prefect-aci-demo-secret",
        "prefect-api-url",
    ]
    status, body = resource_request(
        f"{GROUP_ID}/providers/Microsoft.Network/virtualNetworks/prefect-vnet/subnets/aci",
        arm.store,
    )
    assert status == 200 and body["properties"]["delegations"][0]["name"] == "aci"
    roles = f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions"
    role, _linked = resource_request(roles, arm.store)[1]["value"]
    # A role definition is read at any scope (the vault's here), and answers with its own id.
    at_vault = f"{vault.id}/providers/Microsoft.Authorization/roleDefinitions/{role['name']}"
    assert resource_request(at_vault, arm.store) == (200, role)
    assignments = f"{vault.id}/providers/Microsoft.Authorization/roleAssignments"
    status, body = resource_request(assignments, arm.store)
    assert status == 200 and len(body["value"]) == 1
    status, body = resource_request(
        f"{GROUP_ID}/providers/Microsoft.KeyVault/vaults/nope", arm.store
    )
    assert status == 404 and body["error"]["code"] == "ResourceNotFound"
    status, body = resource_request(f"{roles}/{uuid.uuid4()}", arm.store)
    assert status == 404 and body["error"]["code"] == "RoleDefinitionDoesNotExist"


def test_a_failed_resource_fails_the_deployment_and_stops_what_depends_on_it(params):
    """The worker group fails to start: ARM's DeploymentFailed with the group's own error in its
    details, no outputs; what does not depend on the group is deployed all the same."""
    from prefect_aci.local_aci.groups import GroupError

    class FailingGroups(FakeGroups):
        def create(self, resource_group, resource):
            group = super().create(resource_group, resource)
            group.provisioning_state = "Failed"
            group.error = GroupError("InaccessibleImage", "The image 'x' is not accessible.")
            return group

    arm = ResourceManager(SUBSCRIPTION, FailingGroups([]), SCHEMAS, tenant_id=TENANT)
    deployment = deploy(arm, TEMPLATE, params)
    body = arm.body(deployment)["properties"]
    assert body["provisioningState"] == "Failed" and body["outputs"] == {}
    assert body["error"]["code"] == "DeploymentFailed"
    [detail] = body["error"]["details"]
    assert detail["code"] == "InaccessibleImage"
    assert detail["target"].endswith(f"/containerGroups/{params['prefix']['value']}-worker")
    assert arm.store.by_type("Microsoft.KeyVault/vaults")
    assert arm.operation(deployment)["status"] == "Failed"


def test_secure_outputs_are_declared_and_never_shown(arm):
    template = {
        "parameters": {"token": {"type": "securestring"}},
        "resources": [],
        "outputs": {
            "token": {"type": "securestring", "value": "[parameters('token')]"},
            "count": {"type": "int", "value": 3},
        },
    }
    deployment = deploy(arm, template, {"token": {"value": "s3cret"}})
    assert arm.body(deployment)["properties"]["outputs"] == {
        "token": {"type": "SecureString"},
        "count": {"type": "Int", "value": 3},
    }
    assert "s3cret" not in json.dumps(arm.body(deployment))


def test_a_resources_identities_are_shown_with_their_principals(arm):
    identity_id = f"{GROUP_ID}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id1"
    template = {
        "resources": [
            {
                "type": "Microsoft.ManagedIdentity/userAssignedIdentities",
                "apiVersion": "2024-11-30",
                "name": "id1",
                "location": "westeurope",
                "properties": {},
            },
            {
                "type": "Microsoft.ContainerRegistry/registries",
                "apiVersion": "2025-11-01",
                "name": "registry1",
                "location": "westeurope",
                "sku": {"name": "Premium"},
                "identity": {
                    "type": "SystemAssigned, UserAssigned",
                    "userAssignedIdentities": {identity_id: {}},
                },
                "properties": {},
                "dependsOn": ["id1"],
            },
        ]
    }
    deployment = deploy(arm, template, {})
    assert deployment.state == "Succeeded", deployment.error
    made = arm.store.get(identity_id).properties
    registry = one(arm, "Microsoft.ContainerRegistry/registries", "registry1").body
    assert registry["identity"]["userAssignedIdentities"][identity_id] == {
        "principalId": made["principalId"],
        "clientId": made["clientId"],
    }
    assert registry["identity"]["tenantId"] == TENANT
    uuid.UUID(registry["identity"]["principalId"])
    assert registry["properties"]["loginServer"] == "registry1.azurecr.io"


def test_the_template_with_a_standby_pool_deploys_its_profile_and_pool(arm, params):
    """standbyPoolSize above 0 (with the provider's principal): the container group profile of
    the flow runs and the standby pool of it deploy on local Resource Manager, and the outputs
    name them."""
    provider = str(uuid.uuid4())
    params = {
        **params,
        "standbyPoolSize": {"value": 2},
        "standbyPoolProviderPrincipalId": {"value": provider},
    }
    deployment = deploy(arm, TEMPLATE, params)
    body = arm.body(deployment)
    assert body["properties"]["provisioningState"] == "Succeeded", body["properties"].get("error")
    profile = one(arm, "Microsoft.ContainerInstance/containerGroupProfiles", "prefect-flow-run")
    pool = one(arm, "Microsoft.StandbyPool/standbyContainerGroupPools", "prefect-standby")
    outputs = {name: out["value"] for name, out in body["properties"]["outputs"].items()}
    assert outputs["containerGroupProfileId"].lower() == profile.id.lower()
    assert outputs["standbyPoolId"].lower() == pool.id.lower()
    assert outputs["containerGroupProfileRevision"] >= 1
    assert pool.properties["elasticityProfile"]["maxReadyCapacity"] == 2
    [container] = profile.properties["containers"]
    assert container["name"] == "prefect-job"
    assignments = [
        r
        for r in arm.store.by_type("Microsoft.Authorization/roleAssignments")
        if r.properties["principalId"] == provider
    ]
    assert assignments, "the Standby Pool Resource Provider got no role"
