"""Offline validation of arm/azuredeploy.json against Azure's own JSON schemas.

Each resource is checked against the resource definition for its type and apiVersion in the
provider schema files vendored in arm/schemas/<apiVersion>/<Provider>.json; the template's own
frame (parameters, variables, outputs) against deploymentTemplate.json. Nothing is fetched: every
$ref resolves inside that folder.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from prefect_aci.core.errors import UserError
from prefect_aci.core.paths import PROJECT_ROOT

SCHEMAS_DIR = PROJECT_ROOT / "arm" / "schemas"

TEMPLATE_SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json"
# Keys of a template resource that belong to the deployment engine, not to the resource provider.
ENGINE_KEYS = ("condition", "dependsOn", "scope", "metadata", "comments", "copy")


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


def is_expression(value: object) -> bool:
    return (
        isinstance(value, str)
        and value.startswith("[")
        and value.endswith("]")
        and not value.startswith("[[")
    )


def _judgeable(error: jsonschema.ValidationError) -> bool:
    return not (error.validator in STRING_CONSTRAINTS and is_expression(error.instance))


def _leaves(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    if not error.context:
        return [error]
    return [leaf for child in error.context for leaf in _leaves(child)]


def _errors(schema_ref: str, instance: object, schemas: SchemaSet) -> list[str]:
    validator = jsonschema.Draft4Validator({"$ref": schema_ref}, registry=schemas.registry)
    found = []
    for error in validator.iter_errors(instance):
        # oneOf/anyOf errors hide the useful part in their context tree: report the deepest leaf.
        leaves = [e for e in _leaves(error) if _judgeable(e)]
        if not leaves:
            continue
        best = max(leaves, key=lambda e: len(e.absolute_path))
        where = "/".join(str(part) for part in best.absolute_path) or "(top)"
        found.append(f"{where}: {best.message[:300]}")
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
        problems += [f"{label}: {e}" for e in _errors(ref, body, schemas)]
    return problems
