"""Offline validation of arm/azuredeploy.json against Azure's own JSON schemas.

Each resource is checked against the resource definition for its type and apiVersion in the
provider schema files vendored in arm/schemas/<apiVersion>/<Provider>.json; the template's own
frame (parameters, variables, outputs) against deploymentTemplate.json. Nothing is fetched: every
$ref resolves inside that folder.

Azure's schemas rarely say `additionalProperties: false`, so plain JSON schema validation accepts
any misspelt or invented property (that is how `anonymousPullEnabled` reached a registry
apiVersion that does not have it). Resources are therefore validated strictly: a property that
the schema for that object does not define is an error, unless `UNDECLARED_ALLOWED` names it with
a reason.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import jsonschema
from jsonschema import ValidationError, validators
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from prefect_aci.core.arm_template import is_expression, schema_error_leaves
from prefect_aci.core.errors import UserError
from prefect_aci.core.paths import PROJECT_ROOT

SCHEMAS_DIR = PROJECT_ROOT / "arm" / "schemas"

TEMPLATE_SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json"
# Keys of a template resource that belong to the deployment engine, not to the resource provider:
# they are not in the provider's schema, and are taken off before it is applied.
ENGINE_KEYS = {
    "condition": "the engine deploys the resource only when it is true",
    "dependsOn": "the engine's ordering",
    "scope": "the target of an extension resource (role assignments on a vault, a registry)",
    "metadata": "free-form; checkov reads its skip reasons there",
    "comments": "free-form",
    "copy": "the engine's loops",
}
# Properties a provider accepts although its published schema for that apiVersion does not declare
# them, as (resource type, property name) -> why it is allowed. Keep it short: every entry is a
# property the strict check cannot vouch for.
UNDECLARED_ALLOWED: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class SchemaSet:
    registry: Registry
    definitions: dict[tuple[str, str], str]  # (type lower-case, apiVersion) -> $ref


def load_schemas(folder: Path) -> SchemaSet:
    if not folder.is_dir():
        raise UserError(
            f"Azure's ARM schemas are not at {folder}; set ARM_SCHEMAS_DIR to the "
            "folder holding <apiVersion>/<Provider>.json"
        )
    registry: Registry = Registry()
    definitions: dict[tuple[str, str], str] = {}
    for path in sorted(folder.glob("**/*.json")):
        document = json.loads(path.read_text())
        uri = document.get("id", "").rstrip("#")
        if not uri:
            continue
        registry = registry.with_resource(uri, Resource.from_contents(document, DRAFT4))
        for name, definition in document.get("resourceDefinitions", {}).items():
            properties = definition.get("properties", {})
            types = properties.get("type", {}).get("enum", [])
            versions = properties.get("apiVersion", {}).get("enum", [])
            for resource_type in types:
                for version in versions:
                    definitions[(resource_type.lower(), version)] = (
                        f"{uri}#/resourceDefinitions/{name}"
                    )
    return SchemaSet(registry=registry, definitions=definitions)


# String constraints a template expression cannot be judged by before ARM evaluates it (a name
# "[format(...)]" is longer than the name it makes). Type errors and missing or unknown keys are
# still reported.
STRING_CONSTRAINTS = ("maxLength", "minLength", "pattern", "enum", "format")


def _judgeable(error: jsonschema.ValidationError) -> bool:
    return not (error.validator in STRING_CONSTRAINTS and is_expression(error.instance))


UNDECLARED = "undeclaredProperty"


def _strict(allowed: frozenset[str]) -> type[jsonschema.Draft4Validator]:
    """Draft 4, where an object schema that lists `properties` and says nothing about
    `additionalProperties` rejects any other key (except the ``allowed`` names)."""
    base = jsonschema.Draft4Validator.VALIDATORS["properties"]

    def properties(validator, declared, instance, schema):
        yield from base(validator, declared, instance, schema)
        if not validator.is_type(instance, "object"):
            return
        if "additionalProperties" in schema or "patternProperties" in schema:
            return
        for name in instance:
            if name not in declared and name not in allowed:
                yield ValidationError(
                    f"{name!r} is not a property the schema defines (a typo, or a property of "
                    "another apiVersion?)",
                    validator=UNDECLARED,
                    path=[name],
                )

    return validators.extend(jsonschema.Draft4Validator, {"properties": properties})


def _errors(
    schema_ref: str, instance: object, schemas: SchemaSet, allowed: frozenset[str] | None = None
) -> list[str]:
    kind = jsonschema.Draft4Validator if allowed is None else _strict(allowed)
    validator = kind({"$ref": schema_ref}, registry=schemas.registry)
    found = []
    for error in validator.iter_errors(instance):
        # oneOf/anyOf errors hide the useful part in their context tree: report the deepest leaf,
        # or every undeclared property in it (one object can hold several).
        leaves = [e for e in schema_error_leaves(error) if _judgeable(e)]
        undeclared = [e for e in leaves if e.validator == UNDECLARED]
        if not leaves:
            continue
        for leaf in undeclared or [max(leaves, key=lambda e: len(e.absolute_path))]:
            where = "/".join(str(part) for part in leaf.absolute_path) or "(top)"
            found.append(f"{where}: {leaf.message[:300]}")
    return found


def validate_template(template: dict, schemas: SchemaSet) -> list[str]:
    """Every problem found, as ``<resource or section>: <path>: <message>``; empty when valid."""
    problems = []
    frame = {**template, "resources": []}
    problems += [f"template: {e}" for e in _errors(TEMPLATE_SCHEMA, frame, schemas)]
    for index, resource in enumerate(template.get("resources", [])):
        label = f"resources[{index}] {resource.get('type')}@{resource.get('apiVersion')}"
        key = (str(resource.get("type", "")).lower(), str(resource.get("apiVersion", "")))
        ref = schemas.definitions.get(key)
        if ref is None:
            problems.append(
                f"{label}: no schema for this type and apiVersion in the schema "
                "folder (use an apiVersion it holds, or add its provider file)"
            )
            continue
        body = {k: v for k, v in resource.items() if k not in ENGINE_KEYS}
        allowed = frozenset(
            name for (resource_type, name) in UNDECLARED_ALLOWED if resource_type.lower() == key[0]
        )
        problems += [f"{label}: {e}" for e in _errors(ref, body, schemas, allowed)]
    return problems
