"""A local endpoint speaking the parts of Azure Resource Manager's REST API that `python -m arm`
uses (resource groups, deployments, what-if). It records each request for the tests to read."""

from tests.redirect import RedirectTransport
from tests.stand_ins import Answer, Request, StandIn

MANAGEMENT = "https://management.azure.com"


def template_outputs(subscription: str, group: str, **changes: str) -> dict[str, str]:
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
    }
    return {**outputs, **changes}


class ArmStandIn(StandIn):
    def __init__(
        self,
        bearer: str,
        group_exists: bool = True,
        deployment_state: str = "Succeeded",
        error: tuple[int, str, str] | None = None,
        outputs: dict | None = None,
    ):
        self.bearer = bearer
        self.group_exists = group_exists
        self.deployment_state = deployment_state
        self.error = error
        self.outputs = outputs  # what every deployment reports, as make deploy-all reads them
        super().__init__()

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
        if self.error and "/deployments/" in request.path:
            status, code, message = self.error
            return Answer(status, {"error": {"code": code, "message": message}})
        parts = request.path.strip("/").split("/")
        if len(parts) == 4 and parts[2].lower() == "resourcegroups":
            return self._group(request.method, parts[3], request.json())
        if "deployments" in parts and parts[-1] == "whatIf":
            vault = (
                f"/subscriptions/{parts[1]}/resourceGroups/{parts[3]}"
                "/providers/Microsoft.KeyVault/vaults/kv1"
            )
            changes = [{"resourceId": vault, "changeType": "Create"}]
            return Answer(200, {"status": "Succeeded", "properties": {"changes": changes}})
        if "deployments" in parts:
            values = template_outputs(
                parts[1],
                parts[3],
                **(self.outputs or {}),
                workPoolName=request.json()["properties"]["parameters"]["workPoolName"]["value"],
            )
            outputs = {name: {"type": "String", "value": value} for name, value in values.items()}
            return Answer(
                200,
                {
                    "id": request.path,
                    "name": parts[-1],
                    "properties": {
                        "provisioningState": self.deployment_state,
                        "outputs": outputs,
                        "mode": "Incremental",
                    },
                },
            )
        return Answer(404, {"error": {"code": "NotFound", "message": request.path}})

    def _group(self, method: str, name: str, body: dict | None) -> Answer:
        if method == "HEAD":
            return Answer(204 if self.group_exists else 404)
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
            self.group_exists = False
            return Answer(200)
        return Answer(405)

    def transport(self) -> RedirectTransport:
        return RedirectTransport(MANAGEMENT, self.url)

    def of(self, method: str, contains: str) -> list[dict]:
        return [r for r in self.requests if r["method"] == method and contains in r["path"]]
