"""What the local Resource Manager tests share: the real template, the parameters `prefect-aci
azure deploy` sends (arm/deploy.py's parameters(), from settings), a complete set of the
template's outputs (for the tests that register from a record), and Groups without Docker."""

import copy
import json
import uuid

from arm.deploy import Principal, parameters
from arm.settings import InfraSettings
from prefect_aci.core.paths import PROJECT_ROOT
from prefect_aci.core.records import ImageRecord, Publication, published
from prefect_aci.core.settings import load
from prefect_aci.local_aci.authorization import (
    ROLE_ASSIGNMENTS,
    ROLE_DEFINITIONS,
    assignment,
    definition_id,
)
from prefect_aci.local_aci.config import Identity
from prefect_aci.local_aci.expressions import Scope, evaluate
from prefect_aci.local_aci.groups import DeleteOperation, Group
from prefect_aci.local_aci.schema import ResourceSchemas

SUBSCRIPTION = "0b1f6471-1bf0-4dda-aec3-cb9272f09590"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
GROUP = "prefect-aci-rg"
GROUP_ID = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}"
DEPLOYER = "5d1c7d3e-5a2b-4c39-9f1e-7b7e3c1a2b3c"
API_KEY = "pnu_never_print_this_key"
DEMO_SECRET = "demo-secret-never-shown"
TEMPLATE = json.loads((PROJECT_ROOT / "arm" / "azuredeploy.json").read_text())
SCHEMAS = ResourceSchemas(PROJECT_ROOT / "arm" / "schemas")
GROUPS_TYPE = "Microsoft.ContainerInstance/containerGroups"
IMAGE = published(
    ImageRecord(
        image_id="sha256:" + "1" * 64,
        repository="prefect-aci",
        local_tags=[],
        base_image="b",
        versions={},
        published=Publication(
            registry="reg.azurecr.io",
            repository="team/prefect-aci",
            tags=["t"],
            digest="sha256:" + "2" * 64,
        ),
    )
)


def template_outputs(subscription: str, group: str, **changes: object) -> dict[str, object]:
    """A complete, valid set of arm/azuredeploy.json's outputs for a deployment in ``group``."""
    scope = f"/subscriptions/{subscription}/resourceGroups/{group}/providers"
    identities = f"{scope}/Microsoft.ManagedIdentity/userAssignedIdentities"
    outputs = {
        "subscriptionId": subscription,
        "resourceGroupName": group,
        "location": "westeurope",
        "keyVaultName": "prefectkv1",
        "keyVaultUri": "https://prefectkv1.vault.azure.net/",
        "workerIdentityId": f"{identities}/prefect-worker-id",
        "workerIdentityClientId": "22222222-3333-4444-5555-666666666666",
        "jobIdentityId": f"{identities}/prefect-job-id",
        "jobIdentityClientId": "11111111-2222-3333-4444-555555555555",
        "subnetId": f"{scope}/Microsoft.Network/virtualNetworks/prefect-vnet/subnets/aci",
        "natPublicIp": "20.0.0.1",
        "registryLoginServer": "prefectacr1.azurecr.io",
        "storageAccountName": "prefectst1",
        "storageBlobEndpoint": "https://prefectst1.blob.core.windows.net/",
        "flowCodeContainerName": "flow-code",
        "workPoolName": "aci-pool",
        # No standby pool (standbyPoolSize 0).
        "containerGroupProfileId": "",
        "containerGroupProfileRevision": 0,
        "standbyPoolId": "",
        "standbyWorkPoolName": "",
    }
    return {**outputs, **changes}


class FakeGroups:
    """Groups without Docker: a group is provisioned at once; `events` is shared with the store's
    listener, so the order of everything deployed can be read back."""

    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.groups: dict[str, Group] = {}
        self.created: list[dict] = []
        self.operations: dict[str, DeleteOperation] = {}
        # What each container printed, by "<group>/<container>" (Groups.logs reads Docker's).
        self.printed: dict[str, str] = {}

    def create(self, resource_group: str, resource: dict) -> Group:
        group = Group(resource_group, resource["name"], copy.deepcopy(resource), "Succeeded")
        self.groups[group.key] = group
        self.created.append(resource)
        self.events.append(f"{GROUP_ID}/providers/{GROUPS_TYPE}/{resource['name']}".lower())
        return group

    def wait(self, group: Group, timeout: float) -> None:
        pass

    def get(self, resource_group: str, name: str) -> Group | None:
        return self.groups.get(f"{resource_group}/{name}".lower())

    def all_in(self, resource_group: str) -> list[Group]:
        prefix = f"{resource_group}/".lower()
        return [g for key, g in sorted(self.groups.items()) if key.startswith(prefix)]

    def instance_view(self, group: Group) -> list[tuple[str, dict]]:
        return []  # nothing runs

    def container_states(self) -> dict[str, list[dict]]:
        return {}  # nothing runs

    def logs(self, group: Group, container: str, tail: int | None) -> str | None:
        names = [c["name"] for c in group.spec.get("properties", {}).get("containers", [])]
        if container not in names:
            return None
        lines = self.printed.get(f"{group.name}/{container}", "").splitlines(keepends=True)
        return "".join(lines[-tail:] if tail else lines)

    def begin_delete(self, group: Group, seconds: float) -> DeleteOperation:
        """Deleted at once: the operation has ended when the client first polls it."""
        self.groups.pop(group.key, None)
        operation = DeleteOperation(uuid.uuid4().hex, group.key, group.name, seconds)
        operation.ended = operation.started
        self.operations[operation.id] = operation
        return operation

    def operation(self, operation_id: str) -> DeleteOperation | None:
        return self.operations.get(operation_id.lower())


def deploy_settings(monkeypatch) -> InfraSettings:
    for name, value in {
        "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION,
        "AZURE_RESOURCE_GROUP": GROUP,
        "PREFECT_API_URL": "https://api.prefect.cloud/api/accounts/a/workspaces/w",
        "PREFECT_API_KEY": API_KEY,
        "PREFECT_ACI_DEMO_SECRET_VALUE": DEMO_SECRET,
    }.items():
        monkeypatch.setenv(name, value)
    return load(InfraSettings)


def deploy_parameters(settings: InfraSettings) -> dict:
    """What `prefect-aci azure deploy` sends, signed in as a user."""
    return parameters(settings, IMAGE, Principal(DEPLOYER, "User"))


def _evaluated(resource: dict, scope: Scope) -> dict | None:
    """A template resource with its expressions evaluated, or None when its condition is false."""
    if "condition" in resource and not evaluate(resource["condition"], scope):
        return None
    return evaluate(
        {k: v for k, v in resource.items() if k not in ("condition", "dependsOn")}, scope
    )


def template_roles(
    template: dict,
    subscription: str,
    resource_group: str,
    identities: list[Identity],
    given: dict,
    created_on: str | None = None,
) -> tuple[list[dict], list[dict]]:
    """The role definitions and role assignments ``template`` deploys, in Resource Manager's GET
    shapes: its custom roles (at the subscription, by the GUID the template names them with)
    and its assignments at the scope each names (the resource group when none), referring to
    the roles by the ids the template gives. ``given`` are parameter values; reference() of an
    identity answers from ``identities``."""
    group_id = f"/subscriptions/{subscription}/resourceGroups/{resource_group}"
    scope = Scope(
        subscription_id=subscription,
        resource_group=resource_group,
        location="local",
        deployment_name="local-azure",
        template=template,
        given=given,
        references={
            i.resource_id.lower(): {"principalId": i.principal_id, "clientId": i.client_id}
            for i in identities
        },
    )
    definitions, assignments = [], []
    for resource in template.get("resources", []):
        kind = resource.get("type", "").lower()
        if kind not in (ROLE_DEFINITIONS.lower(), ROLE_ASSIGNMENTS.lower()):
            continue
        found = _evaluated(resource, scope)
        if found is None:
            continue
        if kind == ROLE_DEFINITIONS.lower():
            definitions.append(
                {
                    "id": definition_id(subscription, found["name"]),
                    "name": found["name"],
                    "type": ROLE_DEFINITIONS,
                    "properties": found.get("properties") or {},
                }
            )
            continue
        properties = found.get("properties") or {}
        at = found.get("scope") or group_id
        made = assignment(properties["principalId"], properties["roleDefinitionId"], at, created_on)
        made["name"] = found["name"]
        made["id"] = f"{at}/providers/{ROLE_ASSIGNMENTS}/{found['name']}"
        made["properties"]["principalType"] = properties.get("principalType", "ServicePrincipal")
        assignments.append(made)
    return definitions, assignments
