"""A local endpoint speaking the parts of Azure Resource Manager's REST API that prefect-aci uses:
resource groups, deployments (create, get, what-if, list, delete), container groups (get, list,
delete), role definitions (get, delete) and Key Vaults (get). It records each request for the tests
to read.

The shapes follow Azure/azure-rest-api-specs: ContainerGroups_ListByResourceGroup and
Deployments_ListByResourceGroup answer `{"value": [...], "nextLink": ...}` pages (nextLink an
absolute https://management.azure.com URL); ContainerGroups_Delete answers 200 with the group, or
204 when there is none; Deployments_Delete answers 202 with a Location to poll, or 204.

A resource group deletion can be made to fail as Azure's does while ACI still holds the delegated
subnet (its service association link outlives the container groups): HTTP 400 with the Network
provider's InUseSubnetCannotBeDeleted and its message, as Azure/azure-sdk-for-go#5082 and
Azure/azure-rest-api-specs#17443 quote it; or, as the resource group operation reports it,
ResourceGroupDeletionBlocked with that error in its details (MicrosoftDocs/azure-docs#52282 shows
the shape), from the operation's Location after a 202."""

import datetime
import json
import urllib.parse
import uuid
from dataclasses import dataclass, field

from prefect_aci.local_aci.tls import LocalTls
from tests.local_aci.arm_helpers import template_outputs
from tests.redirect import RedirectTransport
from tests.stand_ins import Answer, Request, StandIn

MANAGEMENT = "https://management.azure.com"


def arm_time(moment: datetime.datetime) -> str:
    """How ARM writes a timestamp: UTC, seven fractional digits, Z."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


@dataclass
class ContainerGroup:
    """A container group as ACI reports it (secure values are never returned)."""

    containers: dict[str, dict[str, str]]  # container name -> environment (plain values)
    cpu: float = 1.0
    memory_gb: float = 1.0
    state: str = "Running"
    secure: tuple[str, ...] = ("PREFECT_API_KEY",)

    def body(self, resource_id: str) -> dict:
        containers = [
            {
                "name": name,
                "properties": {
                    "image": "prefectacr1.azurecr.io/prefect-aci@sha256:" + "2" * 64,
                    "command": ["/usr/bin/tini", "-g", "--", "/opt/prefect/entrypoint.sh"],
                    "environmentVariables": [
                        *({"name": k, "value": v} for k, v in env.items()),
                        *({"name": k} for k in self.secure),
                    ],
                    "resources": {"requests": {"cpu": self.cpu, "memoryInGB": self.memory_gb}},
                    "instanceView": {
                        "restartCount": 0,
                        "currentState": {"state": self.state, "detailStatus": ""},
                        "events": [],
                    },
                },
            }
            for name, env in self.containers.items()
        ]
        return {
            "id": resource_id,
            "name": resource_id.rsplit("/", 1)[-1],
            "type": "Microsoft.ContainerInstance/containerGroups",
            "location": "westeurope",
            "properties": {
                "provisioningState": "Succeeded",
                "containers": containers,
                "osType": "Linux",
                "restartPolicy": "Never",
                "sku": "Standard",
                "instanceView": {"state": self.state, "events": []},
            },
        }


@dataclass
class DeploymentRecord:
    """An entry of a resource group's deployment history."""

    timestamp: datetime.datetime
    state: str = "Succeeded"
    parameters: dict = field(default_factory=dict)
    correlation: str = field(default_factory=lambda: str(uuid.uuid4()))
    outputs: dict | None = None  # as ARM reports them: name -> {"type": ..., "value": ...}

    def body(self, resource_id: str) -> dict:
        properties = {
            "provisioningState": self.state,
            "timestamp": arm_time(self.timestamp),
            "duration": "PT1M2.5S",
            "correlationId": self.correlation,
            "mode": "Incremental",
            "parameters": {
                name: {"type": "String", "value": value} for name, value in self.parameters.items()
            },
        }
        if self.outputs is not None:
            properties["outputs"] = self.outputs
        return {
            "id": resource_id,
            "name": resource_id.rsplit("/", 1)[-1],
            "type": "Microsoft.Resources/deployments",
            "properties": properties,
        }


class ArmStandIn(StandIn):
    def __init__(
        self,
        bearer: str,
        group_exists: bool = True,
        deployment_state: str = "Succeeded",
        error: tuple[int, str, str] | None = None,
        outputs: dict | None = None,
        page_size: int = 100,
        tls: LocalTls | None = None,
    ):
        self.bearer = bearer
        self.group_exists = group_exists
        self.deployment_state = deployment_state
        self.error = error
        self.outputs = outputs  # what every deployment reports, as make deploy-all reads them
        self.page_size = page_size  # ARM pages lists; small pages make the SDK follow nextLink
        self.container_groups: dict[str, ContainerGroup] = {}
        self.deployments: dict[str, DeploymentRecord] = {}
        self.role_definitions: dict[str, dict] = {}  # role definition GUID -> its properties
        self.refuse_deletes = False  # as for an identity without the delete actions
        self.vaults: dict[str, dict] = {}  # Key Vault name -> its properties
        # How many resource group deletions fail as while ACI still holds the subnet, and how:
        # "subnet" (the Network provider's error, at once) or "blocked" (the group operation's).
        self.subnet_in_use_deletes = 0
        self.subnet_in_use_shape = "subnet"
        self.failed_operations: dict[str, str] = {}  # operation id -> resource group
        # With tls, the stand-in can be reached at management.azure.com through AzureHostsProxy.
        super().__init__(tls)

    @property
    def requests(self) -> list[dict]:
        return [
            {"method": r.method, "path": r.path, "query": r.query, "body": r.json()}
            for r in self.received
        ]

    def answer(self, request: Request) -> Answer:
        if request.headers.get("Authorization") != f"Bearer {self.bearer}":
            return Answer(
                401,
                {"error": {"code": "AuthenticationFailed", "message": "no or wrong bearer token"}},
            )
        if self.refuse_deletes and request.method == "DELETE":
            return Answer(
                403,
                {
                    "error": {
                        "code": "AuthorizationFailed",
                        "message": f"The client may not delete {request.path}",
                    }
                },
            )
        if self.error and "/deployments/" in request.path:
            status, code, message = self.error
            return Answer(status, {"error": {"code": code, "message": message}})
        parts = [urllib.parse.unquote(p) for p in request.path.strip("/").split("/")]
        lowered = [p.lower() for p in parts]
        if len(parts) == 4 and lowered[2] == "resourcegroups":
            return self._group(request.method, parts[1], parts[3], request.json())
        if lowered[2:4] == ["providers", "microsoft.authorization"]:
            return self._role_definition(request.method, parts[-1])
        if lowered[2] == "operationresults":
            if parts[-1] in self.failed_operations:
                group = self.failed_operations[parts[-1]]
                return Answer(400, _deletion_blocked(parts[1], group))
            return Answer(204)
        provider = "/".join(lowered[4:7])
        if provider == "providers/microsoft.keyvault/vaults" and request.method == "GET":
            return self._vault(request.path, parts[7])
        if provider == "providers/microsoft.containerinstance/containergroups":
            return self._container_groups(request, parts)
        if provider == "providers/microsoft.resources/deployments":
            return self._deployments(request, parts)
        return _not_found(request.path)

    def _group(self, method: str, subscription: str, name: str, body: dict | None) -> Answer:
        if method == "HEAD":
            return Answer(204 if self.group_exists else 404)
        if method == "GET":
            if not self.group_exists:
                return _not_found(name)
            return Answer(
                200,
                {
                    "id": f"/subscriptions/{subscription}/resourceGroups/{name}",
                    "name": name,
                    "location": "westeurope",
                    "properties": {"provisioningState": "Succeeded"},
                },
            )
        if method == "PUT":
            self.group_exists = True
            return Answer(
                201,
                {
                    "id": f"/resourceGroups/{name}",
                    "name": name,
                    "location": body["location"],
                    "properties": {"provisioningState": "Succeeded"},
                },
            )
        if method == "DELETE":
            if self.subnet_in_use_deletes > 0:
                self.subnet_in_use_deletes -= 1
                if self.subnet_in_use_shape == "subnet":
                    return Answer(400, {"error": _subnet_in_use(subscription, name)})
                operation = str(uuid.uuid4())
                self.failed_operations[operation] = name
                location = f"{MANAGEMENT}/subscriptions/{subscription}/operationresults/{operation}"
                # Azure asks for 15 s or so between polls; the tests need not wait.
                return Answer(
                    202,
                    headers={
                        "Location": f"{location}?api-version=2022-09-01",
                        "Retry-After": "0.01",
                    },
                )
            self.group_exists = False
            return Answer(200)
        return Answer(405)

    def _role_definition(self, method: str, name: str) -> Answer:
        properties = self.role_definitions.get(name)
        if properties is None:
            return Answer(204) if method == "DELETE" else _not_found(name)
        body = {"id": name, "name": name, "type": "Microsoft.Authorization/roleDefinitions"}
        if method == "DELETE":
            del self.role_definitions[name]
        return Answer(200, {**body, "properties": properties})

    def _vault(self, path: str, name: str) -> Answer:
        properties = self.vaults.get(name)
        if properties is None:
            return _not_found(name)
        body = {"id": path, "name": name, "type": "Microsoft.KeyVault/vaults"}
        return Answer(200, {**body, "location": "westeurope", "properties": properties})

    def _container_groups(self, request: Request, parts: list[str]) -> Answer:
        scope = "/" + "/".join(parts[:7])
        if len(parts) == 7 and request.method == "GET":
            return self._page(request, scope, self.container_groups)
        name = parts[7]
        group = self.container_groups.get(name)
        if request.method == "GET":
            return Answer(200, group.body(f"{scope}/{name}")) if group else _not_found(name)
        if request.method == "DELETE":
            if group is None:
                return Answer(204)
            del self.container_groups[name]
            return Answer(200, group.body(f"{scope}/{name}"))
        return Answer(405)

    def _deployments(self, request: Request, parts: list[str]) -> Answer:
        scope = "/" + "/".join(parts[:7])
        if len(parts) == 7 and request.method == "GET":
            return self._page(request, scope, self.deployments)
        name = parts[7]
        if parts[-1] == "whatIf":
            vault = (
                f"/subscriptions/{parts[1]}/resourceGroups/{parts[3]}"
                "/providers/Microsoft.KeyVault/vaults/kv1"
            )
            changes = [{"resourceId": vault, "changeType": "Create"}]
            return Answer(200, {"status": "Succeeded", "properties": {"changes": changes}})
        if request.method == "GET":
            record = self.deployments.get(name)
            return Answer(200, record.body(f"{scope}/{name}")) if record else _not_found(name)
        if request.method == "DELETE":
            if self.deployments.pop(name, None) is None:
                return Answer(204)
            location = f"{MANAGEMENT}/subscriptions/{parts[1]}/operationresults/{uuid.uuid4()}"
            return Answer(
                202,
                headers={
                    "Location": f"{location}?api-version={request.query['api-version']}",
                    "Retry-After": "15",
                },
            )
        if request.method != "PUT":
            return Answer(405)
        parameters = request.json()["properties"]["parameters"]
        self.deployments[name] = DeploymentRecord(
            timestamp=datetime.datetime.now(datetime.UTC), state=self.deployment_state
        )
        values = template_outputs(
            parts[1],
            parts[3],
            **(self.outputs or {}),
            workPoolName=parameters["workPoolName"]["value"],
        )
        outputs = {name: {"type": "String", "value": value} for name, value in values.items()}
        self.deployments[name].outputs = outputs
        return Answer(
            200,
            {
                "id": request.path,
                "name": name,
                "properties": {
                    "provisioningState": self.deployment_state,
                    "outputs": outputs,
                    "mode": "Incremental",
                },
            },
        )

    def _page(self, request: Request, scope: str, items: dict) -> Answer:
        names = sorted(items)
        start = int(request.query.get("$skiptoken", "0"))
        page = names[start : start + self.page_size]
        body: dict = {"value": [items[name].body(f"{scope}/{name}") for name in page]}
        if start + self.page_size < len(names):
            query = urllib.parse.urlencode(
                {"api-version": request.query["api-version"], "$skiptoken": start + len(page)}
            )
            body["nextLink"] = f"{MANAGEMENT}{request.path}?{query}"
        return Answer(200, body)

    def transport(self) -> RedirectTransport:
        return RedirectTransport(MANAGEMENT, self.url)

    def of(self, method: str, contains: str) -> list[dict]:
        return [r for r in self.requests if r["method"] == method and contains in r["path"]]


def _subnet_in_use(subscription: str, group: str) -> dict:
    subnet = (
        f"/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Network/"
        "virtualNetworks/prefect-vnet/subnets/aci"
    )
    return {
        "code": "InUseSubnetCannotBeDeleted",
        "message": f"Subnet aci is in use by {subnet}/serviceAssociationLinks/acisal and cannot "
        "be deleted. In order to delete the subnet, delete all the resources within the subnet. "
        "See aka.ms/deletesubnet.",
        "details": [],
    }


def _deletion_blocked(subscription: str, group: str) -> dict:
    vnet = (
        f"/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Network/"
        "virtualNetworks/prefect-vnet"
    )
    return {
        "error": {
            "code": "ResourceGroupDeletionBlocked",
            "message": f"Deletion of resource group '{group}' failed as resources with "
            "identifiers 'Microsoft.Network/virtualNetworks/prefect-vnet' could not be deleted. "
            "The provisioning state of the resource group will be rolled back. The tracking Id "
            f"is '{uuid.uuid4()}'. Please check audit logs for more details.",
            "details": [
                {
                    "code": None,
                    "target": vnet,
                    "message": json.dumps({"error": _subnet_in_use(subscription, group)}),
                }
            ],
        }
    }


def _not_found(what: str) -> Answer:
    return Answer(404, {"error": {"code": "ResourceNotFound", "message": f"{what} was not found."}})
