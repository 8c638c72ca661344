"""A resource checked against Azure's own JSON schema for its type and apiVersion (vendored in
arm/schemas/), as Resource Manager and the resource providers check a deployment: a wrong type, a
missing property or a property the schema does not define fails it, and the error names the
property. Every provider file in the folder is read (network, identities, authorization, Key
Vault, registry, storage, container instances), so every resource type of arm/azuredeploy.json is
checked alike.

A value that stays a template expression until the resource is deployed (a reference() to a
resource the same deployment makes) is judged as an expression: the schemas allow one anywhere,
and its string constraints cannot be judged before ARM evaluates it.

Azure's published schemas are wrong in a few places; `DEVIATIONS` lists each correction with its
reason.
"""

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from prefect_aci.core.arm_template import is_expression, schema_error_leaves

CONTAINER_GROUPS = "Microsoft.ContainerInstance/containerGroups"
NUMBER = {"type": "number"}
# (definition, property) -> the schema that replaces the published one, and why. They apply to the
# Container Instances provider's files.
DEVIATIONS: dict[tuple[str, str], tuple[dict, str]] = {
    ("ResourceRequests", "cpu"): (
        NUMBER,
        "published as integer; ACI takes fractions (0.5 CPU) and its REST spec says double",
    ),
    ("ResourceRequests", "memoryInGB"): (
        NUMBER,
        "published as integer; ACI takes fractions (1.5 GB) and its REST spec says double",
    ),
    ("ResourceLimits", "cpu"): (NUMBER, "as for requests: a double in the REST spec"),
    ("ResourceLimits", "memoryInGB"): (NUMBER, "as for requests: a double in the REST spec"),
}
DEVIATING_PROVIDER = "Microsoft.ContainerInstance.json"
# Keys of a template resource that belong to the deployment engine, not to the provider.
ENGINE_KEYS = ("dependsOn", "condition", "comments", "scope", "metadata", "copy")
# Constraints a value that is still an expression cannot be judged by.
STRING_CONSTRAINTS = ("maxLength", "minLength", "pattern", "enum", "format")


@dataclass(frozen=True)
class Problem:
    path: str  # properties.containers[0].properties.comand
    message: str


def _path(parts) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class ResourceSchemas:
    """The schema of every resource type and apiVersion the vendored provider files define, with
    the deviations applied."""

    def __init__(self, folder: Path) -> None:
        self.registry: Registry = Registry()
        # (type lower-case, apiVersion) -> (document uri, document, resourceDefinitions key)
        self.definitions: dict[tuple[str, str], tuple[str, dict, str]] = {}
        # type lower-case -> as the provider spells it (Microsoft.ContainerInstance/containerGroups)
        self.spelling: dict[str, str] = {}
        for path in sorted(folder.glob("*/*.json")):
            document = json.loads(path.read_text())
            uri = document.get("id", "").rstrip("#")
            if not uri:
                continue
            if path.name == DEVIATING_PROVIDER:
                for (definition, prop), (replacement, _) in DEVIATIONS.items():
                    properties = document["definitions"].get(definition, {}).get("properties", {})
                    if prop in properties:
                        properties[prop] = copy.deepcopy(replacement)
            self.registry = self.registry.with_resource(
                uri, Resource.from_contents(document, DRAFT4)
            )
            for key, definition in (document.get("resourceDefinitions") or {}).items():
                properties = definition.get("properties", {})
                for kind in properties.get("type", {}).get("enum", []):
                    self.spelling[kind.lower()] = kind
                    for version in properties.get("apiVersion", {}).get("enum", []):
                        self.definitions[(kind.lower(), version)] = (uri, document, key)

    def versions_of(self, resource_type: str) -> list[str]:
        return sorted(v for (t, v) in self.definitions if t == resource_type.lower())

    @property
    def api_versions(self) -> list[str]:
        """The apiVersions of container groups held."""
        return self.versions_of(CONTAINER_GROUPS)

    def check(self, resource: dict) -> list[Problem]:
        """Problems of one evaluated resource; empty when it is valid."""
        kind = str(resource.get("type", ""))
        version = str(resource.get("apiVersion", ""))
        found = self.definitions.get((kind.lower(), version))
        if found is None:
            known = self.versions_of(kind)
            return [
                Problem(
                    "apiVersion",
                    f"apiVersion '{version}' of {kind} is not one the local ACI stand-in holds a "
                    f"schema for ({', '.join(known) if known else 'no apiVersion of that type'})",
                )
            ]
        uri, document, key = found
        body = {k: v for k, v in resource.items() if k not in ENGINE_KEYS}
        validator = jsonschema.Draft4Validator(
            {"$ref": f"{uri}#/resourceDefinitions/{key}"}, registry=self.registry
        )
        problems = []
        for error in validator.iter_errors(body):
            # Every property may also be a template expression: the errors against that
            # alternative say nothing about the value that was meant.
            for leaf in schema_error_leaves(error):
                if _is_expression_schema(leaf.schema):
                    continue
                if leaf.validator in STRING_CONSTRAINTS and is_expression(leaf.instance):
                    continue
                problem = Problem(_path(leaf.absolute_path), leaf.message[:300])
                if problem not in problems:
                    problems.append(problem)
        root = document["resourceDefinitions"][key]
        problems += [
            Problem(path, f"Could not find member '{name}' on object of type '{kind_}'")
            for path, name, kind_ in _unknown(root, body, document, self.registry, [], key)
        ]
        return problems


# The name the container group callers have used.
GroupSchemas = ResourceSchemas


def _is_expression_schema(schema: object) -> bool:
    return isinstance(schema, dict) and str(schema.get("pattern", "")).startswith("^\\[")


def _resolve(schema: dict, document: dict, registry: Registry) -> tuple[dict, str]:
    """Follow $ref (local or into another vendored file); pick the object branch of a oneOf
    (Azure's schemas offer every property as itself or as a template expression)."""
    name = ""
    while True:
        if "$ref" in schema:
            ref = schema["$ref"]
            if ref.startswith("#/"):
                name = ref.rsplit("/", 1)[-1]
                node: object = document
                for part in ref[2:].split("/"):
                    node = node[part]  # type: ignore[index]
                schema = node  # type: ignore[assignment]
            else:
                uri, _, pointer = ref.partition("#")
                resolved = registry.resolver().lookup(ref)
                schema = resolved.contents
                name = pointer.rsplit("/", 1)[-1]
                document = registry[uri].contents
            continue
        branches = schema.get("oneOf") or schema.get("anyOf")
        if branches:
            objects = [b for b in branches if "$ref" in b and "expression" not in b["$ref"]]
            objects += [b for b in branches if b.get("type") in ("object", "array")]
            if not objects:
                return schema, name
            schema = objects[0]
            continue
        return schema, name


def _unknown(schema, instance, document, registry, at, kind):
    """(path, member, type) for each key the schema does not define, walking the instance."""
    schema, name = _resolve(schema, document, registry)
    kind = name or kind
    found = []
    if isinstance(instance, dict) and "properties" in schema:
        known = schema["properties"]
        open_map = isinstance(schema.get("additionalProperties"), dict)
        for key, value in instance.items():
            if key in known:
                found += _unknown(known[key], value, document, registry, [*at, key], key)
            elif not open_map and schema.get("additionalProperties") is not True:
                found.append((_path([*at, key]), key, kind))
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(instance):
            found += _unknown(schema["items"], item, document, registry, [*at, index], kind)
    return found
