"""ARM template expressions, evaluated the way Resource Manager does for the functions a flow-run
template uses (and the ARM template's worker resource). The expressions are read by
prefect_aci.core.arm_template; this module gives them their values.

A function outside `FUNCTIONS` (and `if`) raises TemplateError naming it, which the local
Resource Manager answers with ARM's InvalidTemplate code; so does an expression that does not
parse.
"""

import hashlib
import json
import re
import uuid
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
    is_expression,
    literal_string,
    parse,
)


class TemplateError(Exception):
    """The template cannot be evaluated: ARM answers InvalidTemplate with this message."""


@dataclass(frozen=True)
class Scope:
    """What a deployment's expressions can see. Parameter defaults and variables are evaluated
    when an expression uses them, as ARM does (a variable nobody reads may use any function)."""

    subscription_id: str
    resource_group: str
    location: str
    deployment_name: str
    template: dict[str, Any]
    given: dict[str, Any]  # parameter values supplied with the deployment
    # reference(resourceId) of resources that exist already (identities: clientId, principalId).
    references: dict[str, dict[str, Any]] = field(default_factory=dict)

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


def _guid(*values: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "-".join(values)))


def _resource_id(scope: Scope, *parts: str) -> str:
    resource_type, *names = parts
    namespace, *types = resource_type.split("/")
    if len(types) != len(names):
        raise TemplateError(f"resourceId('{resource_type}', ...) needs {len(types)} name(s)")
    path = "/".join(f"{t}/{n}" for t, n in zip(types, names, strict=True))
    return f"{scope.resource_group_id}/providers/{namespace}/{path}"


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


def _reference(scope: Scope, resource_id: str, *_: Any) -> dict[str, Any]:
    found = scope.references.get(str(resource_id).lower())
    if found is None:
        raise TemplateError(
            f"reference('{resource_id}') names a resource the local ACI stand-in does not hold."
        )
    return found


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
    },
    "deployment": lambda s: {"name": s.deployment_name},
    "uniqueString": lambda s, *values: unique_string(*map(str, values)),
    "guid": lambda s, *values: _guid(*map(str, values)),
    "resourceId": _resource_id,
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
    "string": lambda s, value: value if isinstance(value, str) else str(value),
    "int": lambda s, value: int(value),
    "bool": lambda s, value: value if isinstance(value, bool) else str(value).lower() == "true",
    "equals": lambda s, a, b: a == b,
    "not": lambda s, value: not value,
    "empty": lambda s, value: not value,
    "length": lambda s, value: len(value),
    "true": lambda s: True,
    "false": lambda s: False,
    "null": lambda s: None,
}


def _run(node: Node, scope: Scope) -> Any:
    match node:
        case Literal(value):
            return value
        case Property(target, name):
            found = _run(target, scope)
            if not isinstance(found, dict) or name not in found:
                raise TemplateError(f"The language expression property '{name}' doesn't exist.")
            return found[name]
        case Index(target, index):
            found, key = _run(target, scope), _run(index, scope)
            try:
                return found[key]
            except (KeyError, IndexError, TypeError):
                raise TemplateError(f"The index '{key}' is not valid.") from None
        case Call("if", args):
            # ARM evaluates only the branch it takes.
            if len(args) != 3:
                raise TemplateError("The template function 'if' takes 3 arguments.")
            return _run(args[1] if _run(args[0], scope) else args[2], scope)
        case Call(name, args):
            return _call(name, args, scope)
    raise AssertionError(f"not a node: {node!r}")


def _call(name: str, args: tuple[Node, ...], scope: Scope) -> Any:
    function = FUNCTIONS.get(name)
    if function is None:
        raise TemplateError(
            f"The template function '{name}' is not supported by the local ACI stand-in "
            f"(it evaluates: {', '.join(sorted([*FUNCTIONS, 'if']))})."
        )
    values = [_run(arg, scope) for arg in args]
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
    return _run(tree, scope)


def evaluate(node: Any, scope: Scope) -> Any:
    """Every expression in a template fragment, object keys included."""
    if isinstance(node, str):
        return evaluate_string(node, scope)
    if isinstance(node, list):
        return [evaluate(item, scope) for item in node]
    if isinstance(node, dict):
        return {evaluate(key, scope): evaluate(value, scope) for key, value in node.items()}
    return node
