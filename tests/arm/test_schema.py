"""Every resource against Azure's own provider schema for its apiVersion (offline)."""

import copy
import json

from arm.validation import validate_template
from tests.arm.conftest import TEMPLATE, resources_of


def test_template_is_strict_json_without_comments():
    text = TEMPLATE.read_text()
    json.loads(text)
    assert "//" not in text.replace("https://", "").replace("http://", "")
    assert "/*" not in text


def test_template_validates_against_azure_schemas(template, schemas):
    assert validate_template(template, schemas) == []


def test_every_resource_has_a_schema_here(template, schemas):
    missing = [
        (r["type"], r["apiVersion"])
        for r in template["resources"]
        if (r["type"].lower(), r["apiVersion"]) not in schemas.definitions
    ]
    assert missing == []


def test_validation_catches_a_wrong_enum_value(template, schemas):
    broken = copy.deepcopy(template)
    resources_of(broken, "Microsoft.ContainerInstance/containerGroups")[0]["properties"][
        "restartPolicy"
    ] = "Sometimes"
    [problem] = validate_template(broken, schemas)
    assert "properties/restartPolicy" in problem and "Sometimes" in problem


def test_validation_catches_a_wrong_type(template, schemas):
    broken = copy.deepcopy(template)
    resources_of(broken, "Microsoft.KeyVault/vaults")[0]["properties"][
        "enableRbacAuthorization"
    ] = "yes"
    [problem] = validate_template(broken, schemas)
    assert "enableRbacAuthorization" in problem and "boolean" in problem


def test_validation_catches_an_apiversion_without_schema(template, schemas):
    broken = copy.deepcopy(template)
    resources_of(broken, "Microsoft.Storage/storageAccounts")[0]["apiVersion"] = "2019-01-01"
    [problem] = validate_template(broken, schemas)
    assert "no schema for this type and apiVersion" in problem


def test_parameters_example_names_only_declared_parameters(template):
    example = json.loads((TEMPLATE.parent / "azuredeploy.parameters.example.json").read_text())
    assert set(example["parameters"]) <= set(template["parameters"])
