"""Every resource against Azure's own provider schema for its apiVersion (offline)."""

import copy
import json

import pytest

from arm.validation import ENGINE_KEYS, UNDECLARED_ALLOWED, validate_template
from tests.arm.conftest import TEMPLATE, resources_of
from tests.conftest import run_cli


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


def with_properties(template: dict, resource_type: str, **properties) -> dict:
    """A copy of the template whose first resource of that type has these properties set."""
    broken = copy.deepcopy(template)
    resources_of(broken, resource_type)[0]["properties"].update(properties)
    return broken


def test_validation_catches_a_wrong_enum_value(template, schemas):
    broken = with_properties(
        template, "Microsoft.ContainerInstance/containerGroups", restartPolicy="Sometimes"
    )
    [problem] = validate_template(broken, schemas)
    assert "properties/restartPolicy" in problem and "Sometimes" in problem


def test_validation_catches_a_wrong_type(template, schemas):
    broken = with_properties(template, "Microsoft.KeyVault/vaults", enableRbacAuthorization="yes")
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


def test_validation_flags_a_property_the_schema_does_not_define(template, schemas):
    broken = with_properties(
        template, "Microsoft.ContainerInstance/containerGroups", restartPolicyy="Always"
    )
    [problem] = validate_template(broken, schemas)
    assert "properties/restartPolicyy" in problem
    assert "not a property the schema defines" in problem


def test_validation_flags_an_undefined_property_deep_inside_a_resource(template, schemas):
    broken = copy.deepcopy(template)
    [vnet] = resources_of(broken, "Microsoft.Network/virtualNetworks")
    vnet["properties"]["subnets"][0]["properties"]["delegations"][0]["properties"]["service"] = "x"
    [problem] = validate_template(broken, schemas)
    assert "subnets/0/properties/delegations/0/properties/service" in problem


def test_validation_flags_a_property_of_another_api_version(template, schemas):
    """How anonymousPullEnabled reached the registry: 2023-07-01 does not define it."""
    broken = copy.deepcopy(template)
    registry = resources_of(broken, "Microsoft.ContainerRegistry/registries")[0]
    registry["apiVersion"] = "2023-07-01"
    problems = validate_template(broken, schemas)
    assert any("properties/anonymousPullEnabled" in p for p in problems)
    assert any("properties/roleAssignmentMode" in p for p in problems)


def test_every_allowed_undeclared_property_carries_a_reason():
    assert all(reason.strip() for reason in UNDECLARED_ALLOWED.values())
    assert all(reason.strip() for reason in ENGINE_KEYS.values())


def test_an_allowed_undeclared_property_passes(template, schemas, monkeypatch):
    broken = with_properties(template, "Microsoft.KeyVault/vaults", futureFlag=True)
    assert validate_template(broken, schemas) != []
    monkeypatch.setitem(
        UNDECLARED_ALLOWED, ("Microsoft.KeyVault/vaults", "futureFlag"), "a test's reason"
    )
    assert validate_template(broken, schemas) == []


@pytest.mark.slow  # runs the command in a subprocess
def test_azure_validate_command_flags_an_undefined_property(template, tmp_path):
    broken = with_properties(template, "Microsoft.Storage/storageAccounts", httpsOnly=True)
    path = tmp_path / "azuredeploy.json"
    path.write_text(json.dumps(broken))
    result = run_cli("azure", "validate", "--template", str(path), "--no-checkov", timeout=120)
    assert result.returncode == 1
    assert "properties/httpsOnly" in result.stderr
    assert "error: 1 schema problem(s)" in result.stderr
