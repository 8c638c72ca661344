"""A local endpoint speaking the parts of Azure Resource Manager's REST API that `make deploy-all`
uses (tests/deploy_all): the resource group's existence, deployments (get, create) that report
given outputs, and 404 for a container group or anything else. It records each request for the
tests to read. Everything else prefect-aci sends to Resource Manager is tested on local ACI
(prefect_aci.local_aci) in the test process (tests/local_azure_helpers.py).

The shapes follow Azure/azure-rest-api-specs (Microsoft.Resources resources.json)."""

import datetime
import urllib.parse
import uuid
from dataclasses import dataclass, field

from tests.local_aci.arm_helpers import template_outputs
from tests.redirect import RedirectTransport
from tests.stand_ins import Answer, Request, StandIn

MANAGEMENT = "https://management.azure.com"


def arm_time(moment: datetime.datetime) -> str:
    """How ARM writes a timestamp: UTC, seven fractional digits, Z."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


@dataclass
class DeploymentRecord:
    """An entry of a resource group's deployment history."""

    timestamp: datetime.datetime
    outputs: dict  # as ARM reports them: name -> {"type": ..., "value": ...}
    correlation: str = field(default_factory=lambda: str(uuid.uuid4()))

    def body(self, resource_id: str) -> dict:
        return {
            "id": resource_id,
            "name": resource_id.rsplit("/", 1)[-1],
            "type": "Microsoft.Resources/deployments",
            "properties": {
                "provisioningState": "Succeeded",
                "timestamp": arm_time(self.timestamp),
                "duration": "PT1M2.5S",
                "correlationId": self.correlation,
                "mode": "Incremental",
                "outputs": self.outputs,
            },
        }


class ArmStandIn(StandIn):
    def __init__(self, bearer: str, outputs: dict | None = None):
        self.bearer = bearer
        self.outputs = outputs  # what every deployment reports, as make deploy-all reads them
        self.deployments: dict[str, DeploymentRecord] = {}
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
        parts = [urllib.parse.unquote(p) for p in request.path.strip("/").split("/")]
        lowered = [p.lower() for p in parts]
        if len(parts) == 4 and lowered[2] == "resourcegroups":
            return self._group(request.method, parts[1], parts[3])
        if "/".join(lowered[4:7]) == "providers/microsoft.resources/deployments":
            return self._deployments(request, parts)
        return _not_found(request.path)

    def _group(self, method: str, subscription: str, name: str) -> Answer:
        if method == "HEAD":
            return Answer(204)
        if method == "GET":
            return Answer(
                200,
                {
                    "id": f"/subscriptions/{subscription}/resourceGroups/{name}",
                    "name": name,
                    "type": "Microsoft.Resources/resourceGroups",
                    "location": "westeurope",
                    "properties": {"provisioningState": "Succeeded"},
                },
            )
        return Answer(405)

    def _deployments(self, request: Request, parts: list[str]) -> Answer:
        if len(parts) != 8:
            return Answer(405)
        scope = "/" + "/".join(parts[:7])
        name = parts[7]
        if request.method == "GET":
            record = self.deployments.get(name)
            return Answer(200, record.body(f"{scope}/{name}")) if record else _not_found(name)
        if request.method != "PUT":
            return Answer(405)
        parameters = request.json()["properties"]["parameters"]
        values = template_outputs(
            parts[1],
            parts[3],
            **(self.outputs or {}),
            workPoolName=parameters["workPoolName"]["value"],
        )
        outputs = {
            name: {"type": "Int" if isinstance(value, int) else "String", "value": value}
            for name, value in values.items()
        }
        self.deployments[name] = DeploymentRecord(datetime.datetime.now(datetime.UTC), outputs)
        return Answer(200, self.deployments[name].body(request.path))

    def transport(self) -> RedirectTransport:
        return RedirectTransport(MANAGEMENT, self.url)

    def of(self, method: str, contains: str) -> list[dict]:
        return [r for r in self.requests if r["method"] == method and contains in r["path"]]


def _not_found(what: str) -> Answer:
    return Answer(404, {"error": {"code": "ResourceNotFound", "message": f"{what} was not found."}})
