"""ARM template expressions, evaluated the way Resource Manager does for the functions a flow-run
template and arm/azuredeploy.json use. The expressions are read by prefect_aci.core.arm_template;
this module gives them their values.

Function names are matched without regard to case, as ARM does. A function outside `FUNCTIONS`
(and `if`) raises TemplateError naming it, which the local Resource Manager answers with ARM's
InvalidTemplate code; so does an expression that does not parse. `check_parameters` and
`check_variables` are ARM's checks of a template when it is read, before any resource.

reference() answers from the resources a deployment has recorded (`Scope.lookup`). Before they
exist (ARM's preflight, `Scope.preflight`), an expression that reads one stays the template string
it is, as ARM leaves it unevaluated until the resource is deployed.
"""

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prefect_aci.core.arm_template import (
    Call,
    ExpressionError,
    Index,
    Literal,
    Node,
    Property,
    arm_guid,
    is_expression,
    literal_string,
    parse,
    template_calls,
)


class TemplateError(Exception):
    """The template cannot be evaluated: ARM answers InvalidTemplate with this message."""


class _Deferred:
    """A value known only once the resources it reads are deployed (preflight's reference())."""

    def __repr__(self) -> str:
        return "DEFERRED"


DEFERRED = _Deferred()


@dataclass(frozen=True)
class Scope:
    """What a deployment's expressions can see. Parameter defaults and variables are evaluated
    when an expression uses them; local Resource Manager also evaluates every variable once when
    it reads the template, as ARM resolves them then, used or not."""

    subscription_id: str
    resource_group: str
    location: str
    deployment_name: str
    template: dict[str, Any]
    given: dict[str, Any]  # parameter values supplied with the deployment
    # reference(resourceId) of resources that exist already (identities: clientId, principalId).
    references: dict[str, dict[str, Any]] = field(default_factory=dict)
    tenant_id: str = ""
    # The Resource Manager GET body of a recorded resource by its id (None when there is none):
    # what reference() answers from when a deployment runs.
    lookup: Callable[[str], dict[str, Any] | None] | None = None
    # Before a deployment runs (ARM's preflight), reference() of a resource not made yet stays
    # the expression it is: evaluate() gives back the template string.
    preflight: bool = False

    @property
    def resource_group_id(self) -> str:
        return f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"


def unique_string(*values: str) -> str:
    """13 characters of [a-z0-9], deterministic in its arguments, like ARM's uniqueString().

    ARM's own hash (a 64-bit MurmurHash in base 32) is not published as a specification; this one
    differs in its characters, not in what templates rely on: same inputs, same 13 characters.
    """
    digest = hashlib.sha256("-".join(values).encode()).digest()
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    number = int.from_bytes(digest[:9], "big")
    return "".join(alphabet[(number >> (5 * i)) & 31] for i in range(13))


def _provider_path(function: str, resource_type: str, names: list[Any]) -> str:
    """ "providers/<namespace>/<type>/<name>[/<child type>/<child name>...]"."""
    namespace, *types = str(resource_type).split("/")
    if not types or len(types) != len(names):
        raise TemplateError(
            f"Unable to evaluate template language function '{function}': the type "
            f"'{resource_type}' requires '{len(types)}' resource name argument(s)."
        )
    path = "/".join(f"{t}/{n}" for t, n in zip(types, names, strict=True))
    return f"providers/{namespace}/{path}"


def _resource_id(scope: Scope, *args: Any) -> str:
    """resourceId([subscriptionId], [resourceGroupName], resourceType, name1, [name2], ...): the
    type is the first argument with a '/'; one argument before it is a resource group, two are a
    subscription and a resource group (Microsoft Learn, "Resource functions for ARM templates")."""
    at = next((i for i, arg in enumerate(args) if "/" in str(arg)), None)
    if at is None or at > 2:
        raise TemplateError(
            "Unable to evaluate template language function 'resourceId': no resource type "
            "(namespace/type) among its first three arguments."
        )
    subscription, group = scope.subscription_id, scope.resource_group
    if at == 1:
        group = args[0]
    elif at == 2:
        subscription, group = args[0], args[1]
    path = _provider_path("resourceId", args[at], list(args[at + 1 :]))
    return f"/subscriptions/{subscription}/resourceGroups/{group}/{path}"


def _subscription_resource_id(scope: Scope, *args: Any) -> str:
    """subscriptionResourceId([subscriptionId], resourceType, name1, ...)."""
    at = 1 if args and "/" not in str(args[0]) else 0
    subscription = args[0] if at else scope.subscription_id
    path = _provider_path("subscriptionResourceId", args[at], list(args[at + 1 :]))
    return f"/subscriptions/{subscription}/{path}"


def _extension_resource_id(scope: Scope, resource_id: str, *args: Any) -> str:
    """extensionResourceId(resourceId, resourceType, name1, ...): a resource on another."""
    path = _provider_path("extensionResourceId", args[0], list(args[1:]))
    return f"{str(resource_id).rstrip('/')}/{path}"


def _string(scope: Scope, value: Any) -> str:
    """string(): objects and arrays as compact JSON, booleans as .NET writes them."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return "" if value is None else str(value)


def _format(template: str, *args: Any) -> str:
    return re.sub(r"\{(\d+)\}", lambda m: str(args[int(m.group(1))]), template)


def _parameter(scope: Scope, name: str) -> Any:
    if name in scope.given:
        return scope.given[name]
    declared = (scope.template.get("parameters") or {}).get(name)
    if declared is None:
        raise TemplateError(f"The template parameter '{name}' is not found.")
    if "defaultValue" not in declared:
        raise TemplateError(f"The value for the template parameter '{name}' is not provided.")
    return evaluate(declared["defaultValue"], scope)


def _variable(scope: Scope, name: str) -> Any:
    variables = scope.template.get("variables") or {}
    if name not in variables:
        raise TemplateError(f"The template variable '{name}' is not found.")
    return evaluate(variables[name], scope)


def _reference(
    scope: Scope, resource_id: str, api_version: Any = None, full: Any = None
) -> dict[str, Any] | _Deferred:
    """reference(resourceId, [apiVersion], ['Full']): the resource's properties, or its whole
    GET body with 'Full' (Microsoft Learn, "Resource functions for ARM templates")."""
    body = scope.lookup(str(resource_id)) if scope.lookup else None
    if body is not None:
        return body if str(full or "").lower() == "full" else body.get("properties", {})
    found = scope.references.get(str(resource_id).lower())
    if found is not None:
        return found
    if scope.preflight:
        return DEFERRED
    raise TemplateError(
        f"The resource '{resource_id}' is not defined in the template and does not exist: "
        "reference() cannot read it."
    )


def _json(scope: Scope, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise TemplateError(f"json('{text}') is not valid JSON.") from None


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "parameters": _parameter,
    "variables": _variable,
    "resourceGroup": lambda s: {
        "id": s.resource_group_id,
        "name": s.resource_group,
        "location": s.location,
        "type": "Microsoft.Resources/resourceGroups",
    },
    "subscription": lambda s: {
        "id": f"/subscriptions/{s.subscription_id}",
        "subscriptionId": s.subscription_id,
        "tenantId": s.tenant_id,
        "displayName": "local",
    },
    "deployment": lambda s: {"name": s.deployment_name},
    "uniqueString": lambda s, *values: unique_string(*map(str, values)),
    "guid": lambda s, *values: arm_guid(*map(str, values)),
    "resourceId": _resource_id,
    "subscriptionResourceId": _subscription_resource_id,
    "extensionResourceId": _extension_resource_id,
    "reference": _reference,
    "json": _json,
    "createArray": lambda s, *values: list(values),
    "createObject": lambda s, *pairs: dict(zip(pairs[::2], pairs[1::2], strict=True)),
    "concat": lambda s, *values: (
        [item for value in values for item in value]
        if values and all(isinstance(v, list) for v in values)
        else "".join(map(str, values))
    ),
    "format": lambda s, template, *args: _format(template, *args),
    "toLower": lambda s, value: str(value).lower(),
    "toUpper": lambda s, value: str(value).upper(),
    "string": _string,
    "int": lambda s, value: int(value),
    "bool": lambda s, value: value if isinstance(value, bool) else str(value).lower() == "true",
    "equals": lambda s, a, b: a == b,
    "not": lambda s, value: not value,
    "and": lambda s, *values: all(values),
    "or": lambda s, *values: any(values),
    "empty": lambda s, value: not value,
    "length": lambda s, value: len(value),
    "true": lambda s: True,
    "false": lambda s: False,
    "null": lambda s: None,
}
# ARM matches function names without regard to case: toLower, tolower and TOLOWER are one.
_BY_NAME = {name.lower(): function for name, function in FUNCTIONS.items()}
# Functions that read the state of deployed resources: not allowed in variables.
RUNTIME_FUNCTIONS = ("reference", "list")


def check_variables(template: dict[str, Any]) -> None:
    """ARM reads a template's variables before any resource, and refuses those that read the state
    of deployed resources: reference() and list*() belong in resources and outputs."""
    for name, value in (template.get("variables") or {}).items():
        try:
            found = [c.name for c in template_calls(value)]
        except ExpressionError as exc:
            raise TemplateError(f"The template variable '{name}' is not valid: {exc}") from None
        for function in found:
            if function.lower().startswith(RUNTIME_FUNCTIONS):
                raise TemplateError(
                    f"The template variable '{name}' is not valid: The template function "
                    f"'{function}' is not expected at this location. Please see "
                    "https://aka.ms/arm-functions for usage details."
                )


# A parameter's declared type and the JSON values it takes (secure ones the same as plain ones).
_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "securestring": (str,),
    "int": (int,),
    "bool": (bool,),
    "object": (dict,),
    "secureobject": (dict,),
    "array": (list,),
}
_JSON_TYPE = {str: "String", int: "Integer", bool: "Boolean", dict: "Object", list: "Array"}


def check_parameters(template: dict[str, Any], given: dict[str, Any]) -> None:
    """The supplied values against each parameter's declaration: unknown names, its type,
    allowedValues, minValue/maxValue and minLength/maxLength, with ARM's messages."""
    declared = template.get("parameters") or {}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise TemplateError(
            "The following parameters were supplied, but do not correspond to any parameters "
            f"defined in the template: '{', '.join(unknown)}'."
        )
    for name, value in given.items():
        definition = declared[name]
        kind = str(definition.get("type", "string"))
        wanted = _TYPES.get(kind.lower())
        # JSON's true is not an int to ARM, though it is one to Python.
        if wanted and (
            not isinstance(value, wanted) or (isinstance(value, bool) and bool not in wanted)
        ):
            got = _JSON_TYPE.get(type(value), type(value).__name__)
            raise TemplateError(
                f"Template parameter '{name}' was provided an invalid value. Expected a value of "
                f"type '{kind}', but received a value of type '{got}'."
            )
        invalid = f"The provided value for the template parameter '{name}' is not valid."
        allowed = definition.get("allowedValues")
        if allowed is not None and value not in allowed:
            shown = ",".join(map(str, allowed))
            raise TemplateError(
                f"{invalid} The value '{value}' is not part of the allowed value(s): '{shown}'."
            )
        if isinstance(value, int) and not isinstance(value, bool):
            if "minValue" in definition and value < definition["minValue"]:
                raise TemplateError(
                    f"{invalid} Expected value to be greater than or equal to "
                    f"'{definition['minValue']}', actual value '{value}'."
                )
            if "maxValue" in definition and value > definition["maxValue"]:
                raise TemplateError(
                    f"{invalid} Expected value to be less than or equal to "
                    f"'{definition['maxValue']}', actual value '{value}'."
                )
        if isinstance(value, str | list):
            if "minLength" in definition and len(value) < definition["minLength"]:
                raise TemplateError(
                    f"{invalid} Expected length to be greater than or equal to "
                    f"'{definition['minLength']}', actual length '{len(value)}'."
                )
            if "maxLength" in definition and len(value) > definition["maxLength"]:
                raise TemplateError(
                    f"{invalid} Expected length to be less than or equal to "
                    f"'{definition['maxLength']}', actual length '{len(value)}'."
                )


def _run(node: Node, scope: Scope) -> Any:
    match node:
        case Literal(value):
            return value
        case Property(target, name):
            found = _run(target, scope)
            if found is DEFERRED:
                return DEFERRED
            if not isinstance(found, dict) or name not in found:
                raise TemplateError(f"The language expression property '{name}' doesn't exist.")
            return found[name]
        case Index(target, index):
            found, key = _run(target, scope), _run(index, scope)
            if DEFERRED in (found, key):
                return DEFERRED
            try:
                return found[key]
            except (KeyError, IndexError, TypeError):
                raise TemplateError(f"The index '{key}' is not valid.") from None
        case Call(name, args) if name.lower() == "if":
            # ARM evaluates only the branch it takes.
            if len(args) != 3:
                raise TemplateError("The template function 'if' takes 3 arguments.")
            condition = _run(args[0], scope)
            if condition is DEFERRED:
                return DEFERRED
            return _run(args[1] if condition else args[2], scope)
        case Call(name, args):
            return _call(name, args, scope)
    raise AssertionError(f"not a node: {node!r}")


def _call(name: str, args: tuple[Node, ...], scope: Scope) -> Any:
    function = _BY_NAME.get(name.lower())
    if function is None:
        raise TemplateError(
            f"The template function '{name}' is not supported by the local ACI stand-in "
            f"(it evaluates: {', '.join(sorted([*FUNCTIONS, 'if']))})."
        )
    values = [_run(arg, scope) for arg in args]
    if any(value is DEFERRED for value in values):
        return DEFERRED
    try:
        return function(scope, *values)
    except TemplateError:
        raise
    except (TypeError, ValueError, IndexError, KeyError) as exc:
        raise TemplateError(f"The template function '{name}' failed: {exc}") from None


def evaluate_string(value: str, scope: Scope) -> Any:
    """A template string: the value of its expression, or the literal it stands for."""
    if not is_expression(value):
        return literal_string(value)
    try:
        tree = parse(value)
    except ExpressionError as exc:
        raise TemplateError(str(exc)) from None
    found = _run(tree, scope)
    # Known once deployed: the template string stands for it until then.
    return value if found is DEFERRED else found


def evaluate(node: Any, scope: Scope) -> Any:
    """Every expression in a template fragment, object keys included."""
    if isinstance(node, str):
        return evaluate_string(node, scope)
    if isinstance(node, list):
        return [evaluate(item, scope) for item in node]
    if isinstance(node, dict):
        return {evaluate(key, scope): evaluate(value, scope) for key, value in node.items()}
    return node
