"""Azure Resource Manager's deployments, for templates of container groups: what prefect-azure's
worker submits for every flow run. A deployment is checked before it is accepted (expressions,
resource types, Azure's schema for the container group) and a bad one is refused with ARM's own
error shape; an accepted one runs in the background and is followed with ARM's long-running
operation protocol (Azure-AsyncOperation + Retry-After), as azure-mgmt-resource polls it."""

import datetime
import threading
import time
import uuid
from dataclasses import dataclass, field

from prefect_aci.local_aci.expressions import (
    Scope,
    TemplateError,
    check_parameters,
    check_variables,
    evaluate,
)
from prefect_aci.local_aci.groups import GroupError, Groups
from prefect_aci.local_aci.schema import CONTAINER_GROUPS as CONTAINER_GROUPS_TYPE
from prefect_aci.local_aci.schema import GroupSchemas

# How long a deployment waits for its container groups (pull and start) before it fails.
GROUP_START_TIMEOUT_SECONDS = 900


class ArmError(Exception):
    def __init__(self, status: int, code: str, message: str, details: list[dict] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.details = details or []

    def body(self) -> dict:
        error = {"code": self.code, "message": str(self)}
        if self.details:
            error["details"] = self.details
        return {"error": error}


@dataclass
class Deployment:
    resource_group: str
    name: str
    mode: str
    parameters: dict
    resources: list[dict]
    state: str = "Running"
    error: dict | None = None
    operation: str = field(default_factory=lambda: uuid.uuid4().hex.upper())
    correlation: str = field(default_factory=lambda: str(uuid.uuid4()))
    timestamp: str = field(default_factory=lambda: datetime.datetime.now(datetime.UTC).isoformat())
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def key(self) -> str:
        return f"{self.resource_group}/{self.name}".lower()


def without_nulls(node):
    """A property set to null() is a property not set, for Resource Manager and the providers."""
    if isinstance(node, dict):
        return {k: without_nulls(v) for k, v in node.items() if v is not None}
    if isinstance(node, list):
        return [without_nulls(item) for item in node]
    return node


class ResourceManager:
    def __init__(self, subscription_id: str, groups: Groups, schemas: GroupSchemas) -> None:
        self.subscription_id = subscription_id
        self.groups = groups
        self.schemas = schemas
        self.deployments: dict[str, Deployment] = {}
        self.lock = threading.Lock()

    def create(self, resource_group: str, name: str, body: dict, location: str) -> Deployment:
        """Check the deployment as ARM's validation does; start it; or raise ArmError."""
        properties = (body or {}).get("properties") or {}
        template = properties.get("template")
        if not isinstance(template, dict):
            raise ArmError(
                400,
                "InvalidRequestContent",
                "The request content was invalid: properties.template is required (templateLink "
                "is not supported by the local ACI stand-in).",
            )
        given = properties.get("parameters") or {}
        try:
            resources, parameters = self._evaluate(resource_group, name, template, given, location)
        except TemplateError as exc:
            raise ArmError(
                400, "InvalidTemplate", f"Deployment template validation failed: {exc}"
            ) from None
        problems = [
            (index, problem)
            for index, resource in enumerate(resources)
            for problem in self.schemas.check(resource)
        ]
        if problems:
            raise ArmError(
                400,
                "InvalidTemplateDeployment",
                f"The template deployment '{name}' is not valid according to the validation "
                "procedure. See inner errors for details.",
                [
                    {
                        "code": "InvalidRequestContent",
                        "message": f"The request content was invalid and could not be "
                        f"deserialized: '{problem.message}. Path '{problem.path}'' (resource "
                        f"{resources[index].get('name')}).",
                    }
                    for index, problem in problems
                ],
            )
        deployment = Deployment(
            resource_group, name, properties.get("mode", "Incremental"), parameters, resources
        )
        with self.lock:
            running = self.deployments.get(deployment.key)
            if running is not None and running.state == "Running":
                raise ArmError(
                    409, "DeploymentActive", f"The deployment '{name}' is already running."
                )
            self.deployments[deployment.key] = deployment
        threading.Thread(target=self._run, args=(deployment,), daemon=True).start()
        return deployment

    def _evaluate(
        self, resource_group: str, name: str, template: dict, given: dict, location: str
    ) -> tuple[list[dict], dict]:
        declared = template.get("parameters") or {}
        values = {name: (value or {}).get("value") for name, value in given.items()}
        check_parameters(template, values)
        check_variables(template)
        scope = Scope(self.subscription_id, resource_group, location, name, template, values)
        resources = []
        for resource in template.get("resources") or []:
            if "condition" in resource and not evaluate(resource["condition"], scope):
                continue
            # dependsOn orders resources; a flow-run template holds one container group.
            body = {k: v for k, v in resource.items() if k not in ("condition", "dependsOn")}
            evaluated = without_nulls(evaluate(body, scope))
            if evaluated.get("type") != CONTAINER_GROUPS_TYPE:
                raise TemplateError(
                    f"The resource type '{evaluated.get('type')}' is not supported by the local "
                    f"ACI stand-in, which deploys {CONTAINER_GROUPS_TYPE} only."
                )
            resources.append(evaluated)
        shown = {}
        for parameter, definition in declared.items():
            kind = definition.get("type", "String")
            secure = str(kind).lower().startswith("secure")
            value = {} if secure else {"value": evaluate(f"[parameters('{parameter}')]", scope)}
            shown[parameter] = {"type": kind, **value}
        return resources, shown

    def _run(self, deployment: Deployment) -> None:
        failures = []
        for resource in deployment.resources:
            try:
                group = self.groups.create(deployment.resource_group, resource)
            except GroupError as exc:
                failures.append({"code": exc.code, "message": str(exc)})
                continue
            self.groups.wait(group, GROUP_START_TIMEOUT_SECONDS)
            if group.provisioning_state != "Succeeded":
                error = group.error or GroupError(
                    "ContainerGroupTimeout", f"container group {group.name} did not start in time"
                )
                failures.append({"code": error.code, "message": str(error)})
        deployment.finished = time.monotonic()
        if failures:
            deployment.error = {
                "code": "DeploymentFailed",
                "message": "At least one resource deployment operation failed. Please list "
                "deployment operations for details.",
                "details": failures,
            }
            deployment.state = "Failed"
        else:
            deployment.state = "Succeeded"

    def get(self, resource_group: str, name: str) -> Deployment | None:
        return self.deployments.get(f"{resource_group}/{name}".lower())

    def all_in(self, resource_group: str) -> list[Deployment]:
        prefix = f"{resource_group}/".lower()
        return [d for key, d in sorted(self.deployments.items()) if key.startswith(prefix)]

    def delete(self, deployment: Deployment) -> None:
        with self.lock:
            self.deployments.pop(deployment.key, None)

    def body(self, deployment: Deployment) -> dict:
        base = f"/subscriptions/{self.subscription_id}/resourceGroups/{deployment.resource_group}"
        properties = {
            "provisioningState": deployment.state,
            "timestamp": deployment.timestamp,
            "duration": f"PT{(deployment.finished or time.monotonic()) - deployment.started:.1f}S",
            "correlationId": deployment.correlation,
            "mode": deployment.mode,
            "parameters": deployment.parameters,
            "outputs": {},
            "outputResources": [
                {"id": f"{base}/providers/{CONTAINER_GROUPS_TYPE}/{r['name']}"}
                for r in deployment.resources
            ],
        }
        if deployment.error:
            properties["error"] = deployment.error
        return {
            "id": f"{base}/providers/Microsoft.Resources/deployments/{deployment.name}",
            "name": deployment.name,
            "type": "Microsoft.Resources/deployments",
            "properties": properties,
        }

    @staticmethod
    def operation(deployment: Deployment) -> dict:
        status = {"status": deployment.state}
        if deployment.error:
            status["error"] = deployment.error
        return status
