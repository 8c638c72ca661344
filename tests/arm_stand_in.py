"""A local endpoint speaking the parts of Azure Resource Manager's REST API that `python -m arm`
uses (resource groups, deployments, what-if). It records each request for the tests to read."""

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.redirect import RedirectTransport

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


class ArmStandIn:
    def __init__(
        self,
        bearer: str,
        group_exists: bool = True,
        deployment_state: str = "Succeeded",
        error: tuple[int, str, str] | None = None,
        outputs: dict | None = None,
    ):
        self.bearer = bearer
        self.groups: dict[str, dict] = {}
        self.group_exists = group_exists
        self.deployment_state = deployment_state
        self.error = error
        self.outputs = outputs  # what every deployment reports, as make deploy-all reads them
        self.requests: list[dict] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _answer(self, status: int, body: dict | None = None) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self) -> None:
                url = urllib.parse.urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                stand_in.requests.append(
                    {
                        "method": self.command,
                        "path": url.path,
                        "query": dict(urllib.parse.parse_qsl(url.query)),
                        "body": body,
                    }
                )
                if self.headers.get("Authorization") != f"Bearer {stand_in.bearer}":
                    self._answer(
                        401,
                        {
                            "error": {
                                "code": "AuthenticationFailed",
                                "message": "no or wrong bearer token",
                            }
                        },
                    )
                    return
                if stand_in.error and "/deployments/" in url.path:
                    status, code, message = stand_in.error
                    self._answer(status, {"error": {"code": code, "message": message}})
                    return
                parts = url.path.strip("/").split("/")
                if len(parts) == 4 and parts[2].lower() == "resourcegroups":
                    self._group(parts[3], body)
                elif "deployments" in parts and parts[-1] == "whatIf":
                    vault = (
                        f"/subscriptions/{parts[1]}/resourceGroups/{parts[3]}"
                        "/providers/Microsoft.KeyVault/vaults/kv1"
                    )
                    changes = [{"resourceId": vault, "changeType": "Create"}]
                    self._answer(200, {"status": "Succeeded", "properties": {"changes": changes}})
                elif "deployments" in parts:
                    values = template_outputs(
                        parts[1],
                        parts[3],
                        **(stand_in.outputs or {}),
                        workPoolName=body["properties"]["parameters"]["workPoolName"]["value"],
                    )
                    outputs = {
                        name: {"type": "String", "value": value} for name, value in values.items()
                    }
                    self._answer(
                        200,
                        {
                            "id": url.path,
                            "name": parts[-1],
                            "properties": {
                                "provisioningState": stand_in.deployment_state,
                                "outputs": outputs,
                                "mode": "Incremental",
                            },
                        },
                    )
                else:
                    self._answer(404, {"error": {"code": "NotFound", "message": url.path}})

            def _group(self, name: str, body: dict | None) -> None:
                if self.command == "HEAD":
                    self._answer(204 if stand_in.group_exists else 404)
                elif self.command == "PUT":
                    stand_in.group_exists = True
                    self._answer(
                        201,
                        {
                            "id": f"/resourceGroups/{name}",
                            "name": name,
                            "location": body["location"],
                            "properties": {"provisioningState": "Succeeded"},
                        },
                    )
                elif self.command == "DELETE":
                    stand_in.group_exists = False
                    self._answer(200)
                else:
                    self._answer(405)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def transport(self) -> RedirectTransport:
        host = f"127.0.0.1:{self.server.server_address[1]}"
        return RedirectTransport(MANAGEMENT, f"http://{host}")

    def of(self, method: str, contains: str) -> list[dict]:
        return [r for r in self.requests if r["method"] == method and contains in r["path"]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
