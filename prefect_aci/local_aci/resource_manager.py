"""Azure Resource Manager's deployments: a whole template, as `prefect-aci azure deploy` sends
arm/azuredeploy.json, and the one-group templates prefect-azure's worker submits for every flow
run.

A deployment is read and checked before it is accepted, as ARM's validation does: parameter values
against their declarations, every variable resolved (reference() and list*() refused there), each
resource's condition, name and type evaluated, `dependsOn` and the implicit order of reference()
resolved (a cycle or a dependency the template does not define refused), and each resource
checked against Azure's schema for its type and apiVersion; values that read resources the
deployment makes stay expressions until then. A bad one is refused with ARM's own error shape.

An accepted one runs in the background, followed with ARM's long-running operation protocol
(Azure-AsyncOperation + Retry-After), as azure-mgmt-resource polls it: resources in dependency
order, each evaluated when its turn comes (reference() answers from what is recorded), container
groups run by Groups, every other type recorded in the ResourceStore with its provider's GET
shape. Then the outputs are evaluated into the deployment's GET body. Secure parameters and
outputs are never shown.

What-if deploys the same template into a copy of the store and reports, per resource, whether the
deployment would create it, modify it or leave it as it is.
"""

import copy
import datetime
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prefect_aci.core.arm_template import ExpressionError, template_calls
from prefect_aci.local_aci.expressions import (
    Scope,
    TemplateError,
    check_parameters,
    check_variables,
    evaluate,
)
from prefect_aci.local_aci.groups import GroupError, Groups
from prefect_aci.local_aci.resources import (
    Context,
    Recorded,
    ResourceStore,
    azure_id,
    comparable,
    template_id,
)
from prefect_aci.local_aci.schema import CONTAINER_GROUPS as CONTAINER_GROUPS_TYPE
from prefect_aci.local_aci.schema import ResourceSchemas
from prefect_aci.local_aci.standby import StandbyPools, claim_problem, is_claim

# How long a deployment waits for its container groups (pull and start) before it fails.
GROUP_START_TIMEOUT_SECONDS = 900
# A declared type as ARM spells it in a deployment's parameters and outputs.
TYPE_NAMES = {
    "string": "String",
    "securestring": "SecureString",
    "int": "Int",
    "bool": "Bool",
    "object": "Object",
    "secureobject": "SecureObject",
    "array": "Array",
}


class ArmError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[dict] | None = None,
        additional_info: list[dict] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.details = details or []
        self.additional_info = additional_info or []

    def body(self) -> dict:
        error: dict = {"code": self.code, "message": str(self)}
        if self.details:
            error["details"] = self.details
        if self.additional_info:
            error["additionalInfo"] = self.additional_info
        return {"error": error}


@dataclass
class Planned:
    """One template resource whose condition holds, with its place in the order."""

    source: dict  # as the template has it
    type: str
    name: str
    id: str  # as the template's resourceId() gives it
    azure_id: str  # as Resource Manager gives it
    depends: list[int] = field(default_factory=list)  # indexes into the plan


@dataclass
class Deployment:
    resource_group: str
    name: str
    mode: str
    parameters: dict
    plan: list[Planned] = field(default_factory=list)
    scope: Scope | None = None
    state: str = "Running"
    error: dict | None = None
    caller: str = ""  # the object id of the principal that deployed it
    outputs: dict = field(default_factory=dict)
    output_resources: list[str] = field(default_factory=list)
    operation: str = field(default_factory=lambda: uuid.uuid4().hex.upper())
    correlation: str = field(default_factory=lambda: str(uuid.uuid4()))
    timestamp: str = field(default_factory=lambda: datetime.datetime.now(datetime.UTC).isoformat())
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def key(self) -> str:
        return f"{self.resource_group}/{self.name}".lower()


@dataclass
class WhatIf:
    id: str
    result: dict


def without_nulls(node):
    """A property set to null() is a property not set, for Resource Manager and the providers."""
    if isinstance(node, dict):
        return {k: without_nulls(v) for k, v in node.items() if v is not None}
    if isinstance(node, list):
        return [without_nulls(item) for item in node]
    return node


def _invalid_template(exc: Exception) -> ArmError:
    """ARM's refusal of a template it cannot read: its message quotes the reason."""
    return ArmError(
        400,
        "InvalidTemplate",
        f"Deployment template validation failed: '{exc}'.",
        additional_info=[
            {"type": "TemplateViolation", "info": {"lineNumber": 0, "linePosition": 0, "path": ""}}
        ],
    )


class ResourceManager:
    def __init__(
        self,
        subscription_id: str,
        groups: Groups,
        schemas: ResourceSchemas,
        tenant_id: str = "",
        store: ResourceStore | None = None,
        blob_endpoint: str | None = None,
    ) -> None:
        self.subscription_id = subscription_id
        self.tenant_id = tenant_id
        self.blob_endpoint = blob_endpoint
        self.groups = groups
        self.schemas = schemas
        self.store = store if store is not None else ResourceStore()
        self.deployments: dict[str, Deployment] = {}
        self.what_ifs: dict[str, WhatIf] = {}
        self.lock = threading.Lock()
        # Where a container group that claims from a standby pool goes (LocalAci sets it).
        self.standby: StandbyPools | None = None

    # -- reading a template -------------------------------------------------------------------

    def _read(self, resource_group: str, name: str, body: dict, location: str) -> Deployment:
        """The deployment as ARM's validation leaves it, or ArmError."""
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
        values = {key: (value or {}).get("value") for key, value in given.items()}
        try:
            check_parameters(template, values)
            check_variables(template)
            scope = Scope(
                self.subscription_id,
                resource_group,
                location,
                name,
                template,
                values,
                tenant_id=self.tenant_id,
                preflight=True,
            )
            # Variables are resolved when the template is read, used or not (as ARM does).
            for variable in template.get("variables") or {}:
                evaluate(f"[variables('{variable}')]", scope)
            plan = self._plan(template, scope, resource_group)
            shown = self._parameters(template, scope)
        except (TemplateError, ExpressionError) as exc:
            raise _invalid_template(exc) from None
        deployment = Deployment(
            resource_group, name, properties.get("mode", "Incremental"), shown, plan, scope
        )
        self._preflight(deployment)
        return deployment

    def _plan(self, template: dict, scope: Scope, resource_group: str) -> list[Planned]:
        """The resources whose condition holds, in an order that deploys each after what it
        depends on (explicitly, or through reference()); template order otherwise."""
        planned: list[Planned] = []
        skipped: set[str] = set()
        for resource in template.get("resources") or []:
            if "copy" in resource:
                raise TemplateError(
                    f"The template resource '{resource.get('name')}' uses copy, which the local "
                    "ACI stand-in does not deploy."
                )
            head = {k: evaluate(resource.get(k), scope) for k in ("type", "name", "scope")}
            head = {k: v for k, v in head.items() if v is not None}
            if not isinstance(head.get("type"), str) or not isinstance(head.get("name"), str):
                raise TemplateError("A template resource needs a type and a name.")
            keys = {
                template_id(self.subscription_id, resource_group, head).lower(),
                azure_id(self.subscription_id, resource_group, head).lower(),
            }
            if "condition" in resource and not evaluate(resource["condition"], scope):
                skipped |= keys | {head["name"].lower()}
                continue
            planned.append(
                Planned(
                    resource,
                    head["type"],
                    head["name"],
                    template_id(self.subscription_id, resource_group, head),
                    azure_id(self.subscription_id, resource_group, head),
                )
            )
        index: dict[str, int] = {}
        for at, item in enumerate(planned):
            for key in (item.id, item.azure_id, item.name, f"{item.type}/{item.name}"):
                index.setdefault(key.lower(), at)
        for at, item in enumerate(planned):
            for entry in item.source.get("dependsOn") or []:
                target = str(evaluate(entry, scope))
                if target.lower() in index:
                    item.depends.append(index[target.lower()])
                elif target.lower() not in skipped:
                    raise TemplateError(f"The resource '{target}' is not defined in the template.")
            for target in _referenced(item.source, scope):
                if target.lower() in index and index[target.lower()] != at:
                    item.depends.append(index[target.lower()])
        return _ordered(planned)

    def _parameters(self, template: dict, scope: Scope) -> dict:
        """The deployment's parameters as its GET body shows them: secure ones without value."""
        shown = {}
        for parameter, definition in (template.get("parameters") or {}).items():
            kind = str(definition.get("type", "string"))
            spelled = TYPE_NAMES.get(kind.lower(), kind)
            if kind.lower().startswith("secure"):
                shown[parameter] = {"type": spelled}
            else:
                value = evaluate(f"[parameters('{parameter}')]", scope)
                shown[parameter] = {"type": spelled, "value": value}
        return shown

    def _preflight(self, deployment: Deployment) -> None:
        """Each resource against its schema, evaluated as far as it can be before it runs."""
        assert deployment.scope is not None
        details = []
        for item in deployment.plan:
            try:
                evaluated = _body(item, deployment.scope)
            except TemplateError as exc:
                raise _invalid_template(exc) from None
            for problem in self.schemas.check(evaluated):
                details.append(
                    {
                        "code": "InvalidRequestContent",
                        "target": item.azure_id,
                        "message": "The request content was invalid and could not be "
                        f"deserialized: '{problem.message}. Path '{problem.path}'' (resource "
                        f"'{item.type}/{item.name}').",
                    }
                )
        if details:
            raise ArmError(
                400,
                "InvalidTemplateDeployment",
                f"The template deployment '{deployment.name}' is not valid according to the "
                "validation procedure. The tracking id is "
                f"'{deployment.correlation}'. See inner errors for details.",
                details,
            )

    # -- deploying ------------------------------------------------------------------------------

    def create(
        self,
        resource_group: str,
        name: str,
        body: dict,
        location: str,
        caller: str = "",
        authorize: Callable[[Planned, dict], None] | None = None,
    ) -> Deployment:
        """Check the deployment as ARM's validation does; start it; or raise ArmError.

        ``authorize`` is Azure's check that the caller may write each resource the template
        deploys (given the planned resource and its body as evaluated so far): it raises ArmError
        (AuthorizationFailed, LinkedAuthorizationFailed) before anything is deployed, as ARM
        refuses such a deployment when it is submitted."""
        deployment = self._read(resource_group, name, body, location)
        deployment.caller = caller
        if authorize is not None:
            assert deployment.scope is not None
            for item in deployment.plan:
                authorize(item, without_nulls(_body(item, deployment.scope)))
        with self.lock:
            running = self.deployments.get(deployment.key)
            if running is not None and running.state == "Running":
                raise ArmError(
                    409, "DeploymentActive", f"The deployment '{name}' is already running."
                )
            self.deployments[deployment.key] = deployment
        threading.Thread(target=self._run, args=(deployment,), daemon=True).start()
        return deployment

    def _context(self, deployment: Deployment) -> Context:
        return Context(
            self.subscription_id,
            deployment.resource_group,
            self.tenant_id,
            deployment.name,
            caller=deployment.caller,
            blob_endpoint=self.blob_endpoint,
        )

    def _run(self, deployment: Deployment) -> None:
        try:
            failures = self._deploy(deployment, self.store, run_groups=True)
            if not failures:
                deployment.outputs = self._outputs(deployment, self.store, failures)
        except Exception as exc:  # a defect of the stand-in: the deployment must still end
            logging.getLogger("local-aci").exception("deployment %s failed", deployment.name)
            failures = [{"code": "InternalServerError", "message": type(exc).__name__}]
        deployment.finished = time.monotonic()
        if failures:
            deployment.error = {
                "code": "DeploymentFailed",
                "message": "At least one resource deployment operation failed. Please list "
                "deployment operations for details. Please see https://aka.ms/arm-deployment-"
                "operations for usage details.",
                "details": failures,
            }
            deployment.state = "Failed"
        else:
            deployment.state = "Succeeded"
        deployment.done.set()

    def _deploy(self, deployment: Deployment, store: ResourceStore, run_groups: bool) -> list:
        """Each planned resource in order into ``store``; the failures (a resource whose
        dependency failed is not deployed, as ARM does)."""
        assert deployment.scope is not None
        scope = _live(deployment.scope, store)
        failed: set[int] = set()
        failures: list[dict] = []
        for at, item in enumerate(deployment.plan):
            if any(d in failed for d in item.depends):
                failed.add(at)
                continue
            try:
                resource = _body(item, scope)
                problems = self.schemas.check(resource)
                if problems:
                    raise GroupError(
                        "InvalidRequestContent",
                        "The request content was invalid and could not be deserialized: "
                        f"'{problems[0].message}. Path '{problems[0].path}''.",
                    )
                if item.type.lower() == CONTAINER_GROUPS_TYPE.lower():
                    if run_groups:
                        self._run_group(deployment.resource_group, resource)
                else:
                    store.record(resource, self._context(deployment))
                if item.azure_id not in deployment.output_resources:
                    deployment.output_resources.append(item.azure_id)
            except (TemplateError, GroupError) as exc:
                failed.add(at)
                code = exc.code if isinstance(exc, GroupError) else "InvalidTemplate"
                failures.append({"code": code, "target": item.azure_id, "message": str(exc)})
        return failures

    def _run_group(self, resource_group: str, resource: dict) -> None:
        if self.standby is not None and is_claim(resource):
            refused = claim_problem(resource)
            if refused is not None:
                raise GroupError("BadRequest", refused)
            group = self.standby.create_group(resource_group, resource)
        else:
            group = self.groups.create(resource_group, resource)
        self.groups.wait(group, GROUP_START_TIMEOUT_SECONDS)
        if group.provisioning_state != "Succeeded":
            raise group.error or GroupError(
                "ContainerGroupTimeout", f"container group {group.name} did not start in time"
            )

    def _outputs(self, deployment: Deployment, store: ResourceStore, failures: list) -> dict:
        assert deployment.scope is not None
        scope = _live(deployment.scope, store)
        outputs = {}
        for name, definition in (deployment.scope.template.get("outputs") or {}).items():
            try:
                if "condition" in definition and not evaluate(definition["condition"], scope):
                    continue
                kind = str(definition.get("type", "string"))
                spelled = TYPE_NAMES.get(kind.lower(), kind)
                value = evaluate(definition.get("value"), scope)
            except TemplateError as exc:
                failures.append(
                    {
                        "code": "DeploymentOutputEvaluationFailed",
                        "message": f"Unable to evaluate template outputs: '{name}'. {exc}",
                    }
                )
                continue
            # A secure output is declared, never shown (as ARM answers it).
            shown = {} if kind.lower().startswith("secure") else {"value": value}
            outputs[name] = {"type": spelled, **shown}
        return outputs

    # -- what-if ------------------------------------------------------------------------------

    def what_if(self, resource_group: str, name: str, body: dict, location: str) -> WhatIf:
        """What the deployment would change, as ARM's what-if answers it (WhatIfOperationResult:
        changes[] with changeType Create, Modify, NoChange, or Ignore for what the template does
        not name); or ArmError when the template would not be accepted."""
        deployment = self._read(resource_group, name, body, location)
        trial = self.store.copy()
        failures = self._deploy(deployment, trial, run_groups=False)
        changes = []
        named = set()
        for item in deployment.plan:
            named.add(item.azure_id.lower())
            if item.type.lower() == CONTAINER_GROUPS_TYPE.lower():
                changes.append(self._group_change(deployment, item, trial))
                continue
            before, after = self.store.get(item.azure_id), trial.get(item.azure_id)
            if after is None:
                continue
            change: dict[str, Any] = {"resourceId": item.azure_id, "after": after.body}
            if before is None:
                change["changeType"] = "Create"
            else:
                same = comparable(before.body) == comparable(after.body)
                change.update(changeType="NoChange" if same else "Modify", before=before.body)
            changes.append(change)
        base = f"/subscriptions/{self.subscription_id}/resourceGroups/{resource_group}"
        for recorded in self.store.under(base):
            if recorded.id.lower() not in named and "/subnets/" not in recorded.id.lower():
                changes.append(
                    {"resourceId": recorded.id, "changeType": "Ignore", "before": recorded.body}
                )
        result: dict[str, Any] = {"status": "Succeeded", "properties": {"changes": changes}}
        if failures:
            result = {
                "status": "Failed",
                "error": {
                    "code": "DeploymentWhatIfResourceError",
                    "message": "The what-if operation failed for at least one resource.",
                    "details": failures,
                },
            }
        found = WhatIf(uuid.uuid4().hex, result)
        with self.lock:
            self.what_ifs[found.id] = found
        return found

    def _group_change(self, deployment: Deployment, item: Planned, trial: ResourceStore) -> dict:
        assert deployment.scope is not None
        after = _masked(_body(item, _live(deployment.scope, trial)))
        existing = self.groups.get(deployment.resource_group, item.name)
        change = {"resourceId": item.azure_id, "after": after}
        if existing is None:
            return {**change, "changeType": "Create"}
        before = _masked(existing.spec)
        same = {k: v for k, v in before.items() if k != "apiVersion"} == {
            k: v for k, v in after.items() if k != "apiVersion"
        }
        return {**change, "changeType": "NoChange" if same else "Modify", "before": before}

    def what_if_result(self, operation: str) -> WhatIf | None:
        return self.what_ifs.get(operation)

    # -- reading deployments and resources -----------------------------------------------------

    def get(self, resource_group: str, name: str) -> Deployment | None:
        return self.deployments.get(f"{resource_group}/{name}".lower())

    def all_in(self, resource_group: str) -> list[Deployment]:
        prefix = f"{resource_group}/".lower()
        return [d for key, d in sorted(self.deployments.items()) if key.startswith(prefix)]

    def delete(self, deployment: Deployment) -> None:
        with self.lock:
            self.deployments.pop(deployment.key, None)

    def resource(self, resource_id: str) -> Recorded | None:
        return self.store.get(resource_id)

    def body(self, deployment: Deployment) -> dict:
        base = f"/subscriptions/{self.subscription_id}/resourceGroups/{deployment.resource_group}"
        properties = {
            "provisioningState": deployment.state,
            "timestamp": deployment.timestamp,
            "duration": f"PT{(deployment.finished or time.monotonic()) - deployment.started:.1f}S",
            "correlationId": deployment.correlation,
            "mode": deployment.mode,
            "parameters": deployment.parameters,
            "outputs": deployment.outputs,
            "outputResources": [{"id": i} for i in deployment.output_resources],
            "dependencies": [
                {
                    **_named(item),
                    "dependsOn": [_named(deployment.plan[d]) for d in item.depends],
                }
                for item in deployment.plan
                if item.depends
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


def _named(item: Planned) -> dict:
    """A resource as a deployment's `dependencies` name it."""
    return {"id": item.azure_id, "resourceType": item.type, "resourceName": item.name}


def _live(scope: Scope, store: ResourceStore) -> Scope:
    """The deployment's scope when it runs: reference() answers from ``store``."""
    return Scope(
        scope.subscription_id,
        scope.resource_group,
        scope.location,
        scope.deployment_name,
        scope.template,
        scope.given,
        scope.references,
        tenant_id=scope.tenant_id,
        lookup=store.body,
        preflight=False,
    )


def _body(item: Planned, scope: Scope) -> dict:
    """A planned resource evaluated: what its provider is sent."""
    body = {k: v for k, v in item.source.items() if k not in ("condition", "dependsOn")}
    return without_nulls(evaluate(body, scope))


def _referenced(source: dict, scope: Scope) -> list[str]:
    """The ids a resource's reference() calls read, where they can be known before it runs."""
    found = []
    for call in (c for c in template_calls(source) if c.name.lower() == "reference"):
        if not call.args:
            continue
        try:
            target = evaluate(f"[{call.args[0]}]", scope)
        except TemplateError:
            continue
        if isinstance(target, str):
            found.append(target)
    return found


def _ordered(planned: list[Planned]) -> list[Planned]:
    """Dependencies first, template order otherwise; a cycle is ARM's InvalidTemplate."""
    order: list[int] = []
    state: dict[int, str] = {}

    def visit(at: int) -> None:
        if state.get(at) == "done":
            return
        if state.get(at) == "visiting":
            raise TemplateError(
                f"Circular dependency detected on resource: '{planned[at].azure_id}'. Please see "
                "https://aka.ms/arm-syntax-resources for usage details."
            )
        state[at] = "visiting"
        for dependency in planned[at].depends:
            visit(dependency)
        state[at] = "done"
        order.append(at)

    for at in range(len(planned)):
        visit(at)
    position = {old: new for new, old in enumerate(order)}
    result = []
    for old in order:
        item = copy.copy(planned[old])
        item.depends = sorted({position[d] for d in planned[old].depends})
        result.append(item)
    return result


def _masked(resource: dict) -> dict:
    """A container group without its secure values (what-if never shows them)."""
    shown = copy.deepcopy(resource)
    for container in (shown.get("properties") or {}).get("containers") or []:
        for variable in (container.get("properties") or {}).get("environmentVariables") or []:
            if "secureValue" in variable:
                variable["secureValue"] = None
    return without_nulls(shown)
