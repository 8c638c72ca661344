"""Azure RBAC as the local stand-ins evaluate it: role definitions and assignments in ARM's shapes,
scopes by path segments, Azure's wildcards, notActions, data actions apart from actions, the
action of each request, Azure's refusals (AuthorizationFailed, LinkedAuthorizationFailed,
ForbiddenByRbac, InaccessibleImage), built-in roles by their well-known ids, and the template's
own worker role against the calls prefect-azure's worker makes."""

import json
import re

import pytest
from fastapi.testclient import TestClient

from prefect_aci.core.paths import PROJECT_ROOT
from prefect_aci.demo.local_azure import _identity, make_local_side
from prefect_aci.local_aci import authorization as rbac
from prefect_aci.local_aci.app import LocalAci, https_app
from prefect_aci.local_aci.authorization import (
    ACR_PULL,
    ACR_PULL_ACTION,
    ASSIGN_IDENTITY,
    CONTRIBUTOR,
    GET_SECRET,
    JOIN_SUBNET,
    KEY_VAULT_SECRETS_USER,
    OWNER,
    READ_SECRET_METADATA,
    READER,
    Authorization,
    action_for,
    assignment,
    covers,
    definition_id,
    matches,
    request_action,
    vault_action,
)
from prefect_aci.local_aci.config import Identity, LocalAzure, Wiring, read_config
from prefect_aci.local_aci.directory import Directory
from prefect_aci.local_aci.resource_manager import ResourceManager
from prefect_aci.local_aci.resources import Context
from prefect_aci.local_aci.tokens import TokenIssuer, make_signing_key
from tests.local_aci.arm_helpers import (
    SCHEMAS,
    SUBSCRIPTION,
    TEMPLATE,
    TENANT,
    FakeGroups,
    deploy_parameters,
    deploy_settings,
    template_roles,
)

RG = "prefect-aci-local"
GROUP_ID = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}"
VAULT = "prefectacilocalkv"
VAULT_ID = f"{GROUP_ID}/providers/Microsoft.KeyVault/vaults/{VAULT}"
ACI = f"{GROUP_ID}/providers/Microsoft.ContainerInstance/containerGroups"
DEPLOYMENTS = f"{GROUP_ID}/providers/Microsoft.Resources/deployments"
SUBNET = f"{GROUP_ID}/providers/Microsoft.Network/virtualNetworks/prefect-vnet/subnets/aci"
WORKER = _identity(GROUP_ID, "prefect-worker-id")
JOB = _identity(GROUP_ID, "prefect-job-id")
DEPLOYER = _identity(GROUP_ID, "prefect-aci-deployer")


def on(role: str, principal: str, scope: str, **kwargs) -> Authorization:
    return Authorization(
        assignments=[assignment(principal, definition_id(SUBSCRIPTION, role), scope)], **kwargs
    )


# -- scopes, wildcards, notActions, data actions ---------------------------------------------


def test_a_scope_covers_itself_and_below_by_whole_segments_without_regard_to_case():
    assert covers(GROUP_ID, GROUP_ID)
    assert covers(GROUP_ID, f"{ACI}/g")
    assert covers(GROUP_ID.upper(), f"{ACI}/g".lower())
    assert covers("/", f"{ACI}/g")
    assert not covers(
        GROUP_ID, f"{GROUP_ID}2/providers/Microsoft.ContainerInstance/containerGroups/g"
    )
    assert not covers(f"{ACI}/g", GROUP_ID)
    owner = on(OWNER, "p", GROUP_ID)
    action = "Microsoft.ContainerInstance/containerGroups/write"
    assert owner.allowed("p", action, f"{ACI}/g")
    assert not owner.allowed("p", action, f"{GROUP_ID}2")
    assert not owner.allowed("p", action, f"/subscriptions/{SUBSCRIPTION}")
    assert not owner.allowed("someone-else", action, f"{ACI}/g")


@pytest.mark.parametrize(
    ("pattern", "action", "expected"),
    [
        ("*", "Microsoft.ContainerInstance/containerGroups/write", True),
        ("*/read", "Microsoft.Resources/deployments/operationStatuses/read", True),
        ("*/read", "Microsoft.Resources/deployments/write", False),
        (
            "Microsoft.ContainerInstance/*",
            "Microsoft.ContainerInstance/containerGroups/stop/action",
            True,
        ),
        (
            "Microsoft.ContainerInstance/*",
            "Microsoft.ContainerRegistry/registries/pull/read",
            False,
        ),
        ("Microsoft.KeyVault/vaults/*/read", "Microsoft.KeyVault/vaults/secrets/read", True),
        ("Microsoft.Authorization/*/Write", "Microsoft.Authorization/roleAssignments/write", True),
        ("microsoft.resources/DEPLOYMENTS/write", "Microsoft.Resources/deployments/write", True),
        # Managed Identity Operator's entry grants assigning the identity itself.
        ("Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action", ASSIGN_IDENTITY, True),
        ("Microsoft.Resources/deployments/read", "Microsoft.Resources/deployments/readX", False),
    ],
)
def test_actions_match_azures_wildcards(pattern, action, expected):
    assert matches(pattern, action) is expected


def test_not_actions_take_away_contributor_may_not_write_role_assignments():
    contributor = on(CONTRIBUTOR, "p", GROUP_ID)
    assignments = f"{GROUP_ID}/providers/Microsoft.Authorization/roleAssignments/x"
    assert contributor.allowed("p", "Microsoft.ContainerInstance/containerGroups/write", ACI)
    assert contributor.allowed("p", "Microsoft.Authorization/roleAssignments/read", assignments)
    assert not contributor.allowed(
        "p", "Microsoft.Authorization/roleAssignments/write", assignments
    )
    assert not contributor.allowed(
        "p", "Microsoft.Authorization/roleAssignments/delete", assignments
    )
    assert on(OWNER, "p", GROUP_ID).allowed(
        "p", "Microsoft.Authorization/roleAssignments/write", assignments
    )
    reader = on(READER, "p", GROUP_ID)
    assert reader.allowed("p", "Microsoft.ContainerInstance/containerGroups/read", f"{ACI}/g")
    assert not reader.allowed("p", "Microsoft.ContainerInstance/containerGroups/write", f"{ACI}/g")


def test_data_actions_are_granted_by_data_actions_only():
    owner = on(OWNER, "p", GROUP_ID)
    assert owner.allowed("p", "Microsoft.KeyVault/vaults/write", VAULT_ID)
    assert not owner.allowed("p", GET_SECRET, VAULT_ID, data_action=True)
    user = on(KEY_VAULT_SECRETS_USER, "job", VAULT_ID)
    assert user.allowed("job", GET_SECRET, VAULT_ID, data_action=True)
    assert user.allowed("job", READ_SECRET_METADATA, VAULT_ID, data_action=True)
    # As a control-plane action the same string is not granted; nor on another vault.
    assert not user.allowed("job", GET_SECRET, VAULT_ID)
    assert not user.allowed("job", GET_SECRET, f"{VAULT_ID}2", data_action=True)
    assert not user.allowed(
        "job", "Microsoft.KeyVault/vaults/secrets/setSecret/action", VAULT_ID, data_action=True
    )
    reader = on(rbac.STORAGE_BLOB_DATA_READER, "p", GROUP_ID)
    blobs = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs"
    assert reader.allowed("p", f"{blobs}/read", GROUP_ID, data_action=True)
    assert not reader.allowed("p", f"{blobs}/write", GROUP_ID, data_action=True)
    admin = on(rbac.KEY_VAULT_ADMINISTRATOR, "p", VAULT_ID)
    assert admin.allowed(
        "p", "Microsoft.KeyVault/vaults/keys/encrypt/action", VAULT_ID, data_action=True
    )


def test_an_assignment_takes_effect_after_the_delay_from_its_creation():
    now = [1_000_000.0]
    made = assignment("p", definition_id(SUBSCRIPTION, OWNER), GROUP_ID, "1970-01-12T13:46:40Z")
    late = Authorization(assignments=[made], delay_seconds=30, clock=lambda: now[0])
    action = "Microsoft.Resources/deployments/write"
    assert not late.allowed("p", action, DEPLOYMENTS)
    now[0] += 30
    assert late.allowed("p", action, DEPLOYMENTS)
    assert Authorization(assignments=[made]).allowed("p", action, DEPLOYMENTS)


# -- built-in roles ----------------------------------------------------------------------------

BUILT_IN = {
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
    "acdd72a7-3385-48ef-bd42-f606fba81ae7": "Reader",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": "User Access Administrator",
    "7f951dda-4ed3-4680-a7ca-43fe172d538d": "AcrPull",
    "8311e382-0749-4cb8-b61a-304f252e45ec": "AcrPush",
    "c2f4ef07-c644-48eb-af81-4b1b4947fb11": "AcrDelete",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",
    "00482a5a-887f-4fb3-b363-3b7fe8e74483": "Key Vault Administrator",
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": "Storage Blob Data Reader",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "f1a07417-d97a-45cb-824c-7a7467783830": "Managed Identity Operator",
    # What Microsoft Learn suggests for the Standby Pool Resource Provider (their actions are
    # not all copied from Learn: each says so in its `note`).
    "5d977122-f97e-4b4d-a52f-6b43003ddb4d": "Azure Container Instances Contributor Role",
    "4d97b98b-1d4f-4787-a291-c67834d212e7": "Network Contributor",
    "e40ec5ca-96e0-45a2-b4ff-59039f2c2b59": "Managed Identity Contributor",
    "39fcb0de-8844-4706-b050-c28ddbe3ff83": "Standby Container Group Pool Contributor",
}


@pytest.mark.parametrize(("guid", "name"), sorted(BUILT_IN.items()))
def test_each_built_in_role_is_known_by_its_well_known_id_with_its_source(guid, name):
    auth = Authorization()
    for any_id in (
        guid,
        f"/providers/Microsoft.Authorization/roleDefinitions/{guid}",
        definition_id(SUBSCRIPTION, guid.upper()),
        f"{GROUP_ID}/providers/Microsoft.Authorization/roleDefinitions/{guid}",
    ):
        found = auth.definition(any_id)
        assert found is not None and found["properties"]["roleName"] == name
    assert found["properties"]["type"] == "BuiltInRole"
    assert found["source"].startswith(
        "https://learn.microsoft.com/en-us/azure/role-based-access-control/built-in-roles/"
    )
    assert set(found["properties"]["permissions"][0]) == {
        "actions",
        "notActions",
        "dataActions",
        "notDataActions",
    }


def test_the_templates_built_in_role_ids_are_the_known_roles():
    named = {
        "acrPullRoleId": "AcrPull",
        "acrPushRoleId": "AcrPush",
        "keyVaultSecretsUserRoleId": "Key Vault Secrets User",
        "storageBlobDataReaderRoleId": "Storage Blob Data Reader",
        "storageBlobDataContributorRoleId": "Storage Blob Data Contributor",
    }
    for variable, name in named.items():
        guid = re.search(r"'([0-9a-f-]{36})'", TEMPLATE["variables"][variable]).group(1)
        assert BUILT_IN[guid] == name


def test_acr_pull_is_the_pull_action_only():
    pull = on(ACR_PULL, "p", f"{GROUP_ID}/providers/Microsoft.ContainerRegistry/registries/r")
    registry = f"{GROUP_ID}/providers/Microsoft.ContainerRegistry/registries/r"
    assert pull.allowed("p", ACR_PULL_ACTION, registry)
    assert not pull.allowed("p", "Microsoft.ContainerRegistry/registries/push/write", registry)
    assert not pull.allowed("p", ACR_PULL_ACTION, f"{registry}2")


# -- requests and their actions ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "action"),
    [
        ("PUT", f"{ACI}/g", "Microsoft.ContainerInstance/containerGroups/write"),
        ("GET", f"{ACI}/g".lower(), "Microsoft.ContainerInstance/containerGroups/read"),
        ("DELETE", f"{ACI}/g", "Microsoft.ContainerInstance/containerGroups/delete"),
        ("GET", ACI, "Microsoft.ContainerInstance/containerGroups/read"),
        ("POST", f"{ACI}/g/stop", "Microsoft.ContainerInstance/containerGroups/stop/action"),
        ("POST", f"{ACI}/g/start", "Microsoft.ContainerInstance/containerGroups/start/action"),
        ("POST", f"{ACI}/g/restart", "Microsoft.ContainerInstance/containerGroups/restart/action"),
        (
            "GET",
            f"{ACI}/g/containers/c/logs",
            "Microsoft.ContainerInstance/containerGroups/containers/logs/read",
        ),
        ("PUT", f"{DEPLOYMENTS}/d", "Microsoft.Resources/deployments/write"),
        ("GET", f"{DEPLOYMENTS}/d", "Microsoft.Resources/deployments/read"),
        ("DELETE", f"{DEPLOYMENTS}/d", "Microsoft.Resources/deployments/delete"),
        ("GET", DEPLOYMENTS, "Microsoft.Resources/deployments/read"),
        (
            "GET",
            f"{DEPLOYMENTS}/d/operationStatuses/08584",
            "Microsoft.Resources/deployments/operationStatuses/read",
        ),
        ("POST", f"{DEPLOYMENTS}/d/whatIf", "Microsoft.Resources/deployments/whatIf/action"),
        ("GET", GROUP_ID.lower(), "Microsoft.Resources/subscriptions/resourceGroups/read"),
        ("HEAD", GROUP_ID, "Microsoft.Resources/subscriptions/resourceGroups/read"),
        ("GET", VAULT_ID, "Microsoft.KeyVault/vaults/read"),
        ("GET", SUBNET, "Microsoft.Network/virtualNetworks/subnets/read"),
        (
            "GET",
            f"{VAULT_ID}/providers/Microsoft.Authorization/roleAssignments/x",
            "Microsoft.Authorization/roleAssignments/read",
        ),
    ],
)
def test_each_request_maps_to_its_azure_action(method, path, action):
    assert action_for(method, path) == action


def test_the_scope_of_a_request_is_its_resource_or_the_parent_of_a_collection():
    assert request_action("GET", f"{ACI}/g").scope == f"{ACI}/g"
    assert request_action("POST", f"{ACI}/g/stop").scope == f"{ACI}/g"
    assert request_action("GET", ACI).scope == GROUP_ID
    assert request_action("GET", DEPLOYMENTS).scope == GROUP_ID


def test_vault_requests_map_to_key_vault_data_actions():
    assert vault_action("GET", "/secrets/demo") == GET_SECRET
    assert vault_action("GET", f"/secrets/demo/{'0' * 32}") == GET_SECRET
    assert vault_action("GET", "/secrets") == READ_SECRET_METADATA
    assert vault_action("GET", "/secrets/demo/versions") == READ_SECRET_METADATA


# -- the app: Azure's refusals ------------------------------------------------------------------


def config(definitions: list[dict], assignments: list[dict]) -> LocalAzure:
    return LocalAzure(
        tenant_id=TENANT,
        subscription_id=SUBSCRIPTION,
        resource_group=RG,
        identities=[WORKER, JOB, DEPLOYER],
        role_definitions=definitions,
        role_assignments=assignments,
        admin_principal_id=DEPLOYER.principal_id,
        wiring=Wiring(
            stack_id="x", network="n", imds_network="i", extra_hosts={}, ca_bundle_host_path="/ca"
        ),
    )


def template_worker_role(without: str | None = None) -> tuple[list[dict], list[dict]]:
    """arm/azuredeploy.json's role definitions and assignments for these identities (and the
    template's worker role without one of its actions)."""
    template = json.loads(json.dumps(TEMPLATE))
    if without is not None:
        for variable in ("workerActions", "workerLinkedActions"):
            if without in template["variables"][variable]:
                template["variables"][variable].remove(without)
    return template_roles(
        template,
        SUBSCRIPTION,
        RG,
        [WORKER, JOB],
        {"keyVaultName": VAULT, "deployerPrincipalId": DEPLOYER.principal_id},
    )


@pytest.fixture
def issuer(tmp_path) -> TokenIssuer:
    make_signing_key(tmp_path / "key.pem")
    return TokenIssuer(tmp_path / "key.pem", TENANT)


class Groups(FakeGroups):
    """Groups without Docker, with nothing running in them."""

    def instance_view(self, group) -> list:
        return []


def app_for(azure: LocalAzure, issuer: TokenIssuer) -> TestClient:
    groups = Groups([])
    arm = ResourceManager(SUBSCRIPTION, groups, SCHEMAS, tenant_id=TENANT)
    # A vault with one secret, as a template deploys them.
    context = Context(SUBSCRIPTION, RG, TENANT, "vault")
    vault = {"type": "Microsoft.KeyVault/vaults", "name": VAULT, "location": "local"}
    arm.store.record({**vault, "properties": {"tenantId": TENANT}}, context)
    secret = {"type": "Microsoft.KeyVault/vaults/secrets", "name": f"{VAULT}/demo"}
    arm.store.record({**secret, "properties": {"value": "value"}}, context)
    return TestClient(https_app(LocalAci(azure, groups, arm, issuer, "secret")))


def bearer(issuer: TokenIssuer, who: Identity, audience: str) -> dict:
    token = issuer.issue(audience, who.client_id, who.principal_id, who.resource_id).token
    return {"Authorization": f"Bearer {token}"}


def group_body(identities: list[str], subnet: str | None, registry_identity: str | None = None):
    properties = {
        "osType": "Linux",
        "restartPolicy": "Never",
        "containers": [
            {
                "name": "job",
                "properties": {
                    "image": "prefectacr.azurecr.io/prefect-aci@sha256:" + "1" * 64,
                    "resources": {"requests": {"cpu": 1, "memoryInGB": 1}},
                },
            }
        ],
    }
    if subnet:
        properties["subnetIds"] = [{"id": subnet}]
    if registry_identity:
        properties["imageRegistryCredentials"] = [
            {"server": "prefectacr.azurecr.io", "identity": registry_identity}
        ]
    body = {"location": "local", "properties": properties}
    if identities:
        body["identity"] = {
            "type": "UserAssigned",
            "userAssignedIdentities": {i: {} for i in identities},
        }
    return body


API = {"api-version": "2023-05-01"}


def test_a_missing_action_is_azures_authorization_failed(issuer):
    client = app_for(config(*template_worker_role()), issuer)
    headers = bearer(issuer, JOB, "https://management.azure.com")
    answer = client.get(f"https://management.azure.com{ACI}/g", params=API, headers=headers)
    assert answer.status_code == 403
    error = answer.json()["error"]
    assert error["code"] == "AuthorizationFailed"
    assert error["message"] == (
        f"The client '{JOB.client_id}' with object id '{JOB.principal_id}' does not have "
        "authorization to perform action 'Microsoft.ContainerInstance/containerGroups/read' over "
        f"scope '{ACI}/g' or the scope is invalid. If access was recently granted, please "
        "refresh your credentials."
    )


def test_assigning_an_identity_or_joining_a_subnet_without_the_right_is_linked_authorization_failed(
    issuer,
):
    definitions, assignments = template_worker_role(without=ASSIGN_IDENTITY)
    client = app_for(config(definitions, assignments), issuer)
    headers = bearer(issuer, WORKER, "https://management.azure.com")
    answer = client.put(
        f"https://management.azure.com{ACI}/run-1",
        params=API,
        headers=headers,
        json=group_body([JOB.resource_id], SUBNET),
    )
    assert answer.status_code == 403
    error = answer.json()["error"]
    assert error["code"] == "LinkedAuthorizationFailed"
    assert error["message"] == (
        f"The client '{WORKER.client_id}' with object id '{WORKER.principal_id}' has permission "
        "to perform action 'Microsoft.ContainerInstance/containerGroups/write' on scope "
        f"'{ACI}/run-1'; however, it does not have permission to perform action(s) "
        f"'{ASSIGN_IDENTITY}' on the linked scope(s) '{JOB.resource_id}' (respectively) or the "
        "linked scope(s) are invalid."
    )
    definitions, assignments = template_worker_role(without=JOIN_SUBNET)
    client = app_for(config(definitions, assignments), issuer)
    answer = client.put(
        f"https://management.azure.com{ACI}/run-1",
        params=API,
        headers=headers,
        json=group_body([JOB.resource_id], SUBNET),
    )
    assert (
        answer.status_code == 403
        and f"'{JOIN_SUBNET}' on the linked scope(s) '{SUBNET}'"
        in (answer.json()["error"]["message"])
    )


def test_the_templates_worker_may_not_put_its_own_identity_or_another_subnet_on_a_group(issuer):
    """The worker holds assign/action on the job identity and join/action on the subnet only: a
    flow run naming the worker's identity (or another subnet) is refused, as Azure refuses it."""
    client = app_for(config(*template_worker_role()), issuer)
    headers = bearer(issuer, WORKER, "https://management.azure.com")
    for identities, subnet, refused_scope in (
        ([WORKER.resource_id], SUBNET, WORKER.resource_id),
        ([JOB.resource_id], f"{SUBNET}2", f"{SUBNET}2"),
    ):
        answer = client.put(
            f"https://management.azure.com{ACI}/run-1",
            params=API,
            headers=headers,
            json=group_body(identities, subnet),
        )
        assert answer.status_code == 403, answer.json()
        error = answer.json()["error"]
        assert error["code"] == "LinkedAuthorizationFailed"
        assert f"on the linked scope(s) '{refused_scope}'" in error["message"]


def test_the_templates_worker_role_creates_a_group_with_the_job_identity_in_the_subnet(issuer):
    client = app_for(config(*template_worker_role()), issuer)
    headers = bearer(issuer, WORKER, "https://management.azure.com")
    answer = client.put(
        f"https://management.azure.com{ACI}/run-1",
        params=API,
        headers=headers,
        json=group_body([JOB.resource_id], SUBNET),
    )
    assert answer.status_code == 201, answer.text


def test_an_image_pulled_with_an_identity_without_acr_pull_is_inaccessible(issuer):
    # The template gives the job identity AcrPull on ITS registry (parameter registryName);
    # this group pulls from another registry with it.
    client = app_for(config(*template_worker_role()), issuer)
    headers = bearer(issuer, WORKER, "https://management.azure.com")
    answer = client.put(
        f"https://management.azure.com{ACI}/run-1",
        params=API,
        headers=headers,
        json=group_body([JOB.resource_id], SUBNET, registry_identity=JOB.resource_id),
    )
    assert answer.status_code == 400
    assert answer.json()["error"] == {
        "code": "InaccessibleImage",
        "message": f"The image 'prefectacr.azurecr.io/prefect-aci@sha256:{'1' * 64}' in "
        "container group 'run-1' is not accessible. Please check the image and registry "
        "credential.",
    }
    registry = f"{GROUP_ID}/providers/Microsoft.ContainerRegistry/registries/prefectacr"
    definitions, assignments = template_worker_role()
    assignments.append(
        assignment(JOB.principal_id, definition_id(SUBSCRIPTION, ACR_PULL), registry)
    )
    client = app_for(config(definitions, assignments), issuer)
    answer = client.put(
        f"https://management.azure.com{ACI}/run-1",
        params=API,
        headers=headers,
        json=group_body([JOB.resource_id], SUBNET, registry_identity=JOB.resource_id),
    )
    assert answer.status_code == 201, answer.text


def test_key_vault_refuses_a_caller_without_the_data_action_as_forbidden_by_rbac(issuer):
    client = app_for(config(*template_worker_role()), issuer)
    url = f"https://{VAULT}.vault.azure.net/secrets/demo"
    refused = client.get(
        url,
        params={"api-version": "7.4"},
        headers=bearer(issuer, DEPLOYER, "https://vault.azure.net"),
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["innererror"] == {"code": "ForbiddenByRbac"}
    assert f"Action: '{GET_SECRET}'" in refused.json()["error"]["message"]
    read = client.get(
        url, params={"api-version": "7.4"}, headers=bearer(issuer, JOB, "https://vault.azure.net")
    )
    assert read.status_code == 200 and read.json()["value"] == "value"


# -- the template's worker role against prefect-azure's worker ---------------------------------

# What prefect-azure's ACI worker (prefect_azure.workers.container_instance) calls for one flow
# run: the ARM deployment of the run's group (PUT, its async operation status, the final GET),
# the group (GET while it runs), its container's logs, and the group's DELETE at the end.
WORKER_CALLS = [
    ("PUT", f"{DEPLOYMENTS}/prefect-run-1"),
    ("GET", f"{DEPLOYMENTS}/prefect-run-1/operationStatuses/08584"),
    ("GET", f"{DEPLOYMENTS}/prefect-run-1"),
    ("GET", f"{ACI}/run-1"),
    ("GET", f"{ACI}/run-1/containers/run-1/logs"),
    ("DELETE", f"{ACI}/run-1"),
]


def test_the_templates_worker_role_allows_the_calls_prefect_azures_worker_makes():
    definitions, assignments = template_worker_role()
    [role] = [
        d for d in definitions if d["properties"]["roleName"].startswith("Prefect ACI worker (")
    ]
    assert role["properties"]["assignableScopes"] == [GROUP_ID]
    [worker_assignment] = [
        a
        for a in assignments
        if a["properties"]["principalId"] == WORKER.principal_id
        and "roleDefinitions/" + role["name"] in a["properties"]["roleDefinitionId"]
    ]
    assert worker_assignment["properties"]["scope"] == GROUP_ID
    auth = Authorization(definitions=definitions, assignments=assignments)
    for method, path in WORKER_CALLS:
        needed = request_action(method, path)
        assert auth.allowed(WORKER.principal_id, needed.action, needed.scope), (method, path)
    # Nothing beyond the resource group, nothing on role assignments, no data actions.
    other_group = f"{GROUP_ID}2/providers/Microsoft.ContainerInstance/containerGroups/run-1"
    for method, path in [
        ("PUT", other_group),
        ("PUT", f"{GROUP_ID}/providers/Microsoft.Authorization/roleAssignments/x"),
        ("DELETE", VAULT_ID),
        ("POST", f"{ACI}/run-1/restart"),
    ]:
        needed = request_action(method, path)
        assert not auth.allowed(WORKER.principal_id, needed.action, needed.scope), (method, path)
    assert not auth.allowed(WORKER.principal_id, GET_SECRET, VAULT_ID, data_action=True)


@pytest.mark.parametrize(("method", "path"), WORKER_CALLS)
def test_one_action_removed_from_the_worker_role_fails_that_call_with_authorization_failed(
    issuer, method, path
):
    action = action_for(method, path)
    [listed] = [a for a in TEMPLATE["variables"]["workerActions"] if a.lower() == action.lower()]
    client = app_for(config(*template_worker_role(without=listed)), issuer)
    headers = bearer(issuer, WORKER, "https://management.azure.com")
    answer = client.request(
        method,
        f"https://management.azure.com{path}",
        params=API,
        headers=headers,
        json={} if method == "PUT" else None,
    )
    assert answer.status_code == 403
    error = answer.json()["error"]
    assert error["code"] == "AuthorizationFailed" and f"action '{action}'" in error["message"]
    # With the template's role as it is, the same call is not refused for authorization.
    allowed = app_for(config(*template_worker_role()), issuer).request(
        method,
        f"https://management.azure.com{path}",
        params=API,
        headers=headers,
        json={} if method == "PUT" else None,
    )
    assert allowed.status_code != 403


def test_the_builtin_roles_file_names_its_source():
    document = json.loads(
        (PROJECT_ROOT / "prefect_aci" / "local_aci" / "builtin_roles.json").read_text()
    )
    assert (
        "learn.microsoft.com" in document["description"]
        or "Microsoft Learn" in document["description"]
    )
    assert {r["name"] for r in document["roles"]} == set(BUILT_IN)


def test_the_template_deployed_on_the_stacks_local_azure_gives_the_roles_the_runs_need(
    tmp_path, monkeypatch
):
    side = make_local_side(
        tmp_path,
        "stack",
        "net",
        "172.30.0.2",
        "https://172.30.0.1:10000/devstoreaccount1",
        ("172.30.0.1", "172.30.0.2"),
    )
    azure = read_config(side.folder / "config.json")
    # Before anything is deployed, the deployer owns the empty resource group and nothing else.
    [deployer] = azure.identities
    group = azure.resource_group_id
    arm = ResourceManager(azure.subscription_id, Groups([]), SCHEMAS, tenant_id=azure.tenant_id)
    directory = Directory(azure, arm.store)
    assert directory.authorization().allowed(
        deployer.principal_id, "Microsoft.Authorization/roleAssignments/write", group
    )
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", azure.subscription_id)
    monkeypatch.setenv("AZURE_RESOURCE_GROUP", azure.resource_group)
    params = deploy_parameters(deploy_settings(monkeypatch))
    params["deployerPrincipalId"] = {"value": deployer.principal_id}
    request = {"properties": {"mode": "Incremental", "template": TEMPLATE, "parameters": params}}
    deployment = arm.create(azure.resource_group, "infra", request, azure.location)
    assert deployment.done.wait(30) and deployment.state == "Succeeded", deployment.error
    outputs = {k: v["value"] for k, v in deployment.outputs.items()}
    worker = directory.identity_by_resource_id(outputs["workerIdentityId"])
    job = directory.identity_by_resource_id(outputs["jobIdentityId"])
    assert worker and job and worker.client_id == outputs["workerIdentityClientId"]
    vault = directory.vault(f"{outputs['keyVaultName']}.vault.azure.net")
    assert vault is not None
    auth = directory.authorization()
    for method, path in WORKER_CALLS:
        needed = request_action(method, path.replace(GROUP_ID, group))
        assert auth.allowed(worker.principal_id, needed.action, needed.scope)
    assert auth.allowed(job.principal_id, GET_SECRET, vault.id, data_action=True)
    assert not auth.allowed(worker.principal_id, GET_SECRET, vault.id, data_action=True)
    assert not auth.allowed(deployer.principal_id, GET_SECRET, vault.id, data_action=True)
    assert directory.secret(vault, "prefect-aci-demo-secret") is not None
    assert azure.role_assignment_delay_seconds == 0


def test_with_a_delay_set_a_new_assignment_is_refused_until_it_has_propagated(issuer):
    url = f"https://management.azure.com{ACI}/run-1"
    headers = bearer(issuer, WORKER, "https://management.azure.com")
    azure = config(*template_worker_role())
    assert app_for(azure, issuer).get(url, params=API, headers=headers).status_code == 404
    late = azure.model_copy(update={"role_assignment_delay_seconds": 3600})
    refused = app_for(late, issuer).get(url, params=API, headers=headers)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "AuthorizationFailed"
