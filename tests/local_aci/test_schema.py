"""A container group checked against Azure's own schema for its apiVersion: what ACI takes passes,
a wrong type, a missing property or a misspelt one fails naming it."""

import copy

import pytest
from prefect_azure.workers.container_instance import _get_default_arm_template

from prefect_aci.core.paths import PROJECT_ROOT
from prefect_aci.local_aci.expressions import Scope, evaluate
from prefect_aci.local_aci.schema import DEVIATIONS, GroupSchemas

SCHEMAS = GroupSchemas(PROJECT_ROOT / "arm" / "schemas")


@pytest.fixture
def group() -> dict:
    """prefect-azure's own flow-run template, rendered the way its worker fills it."""
    [resource] = copy.deepcopy(_get_default_arm_template()["resources"])
    container = resource["properties"]["containers"][0]["properties"]
    container.update(
        image="registry/prefect-aci@sha256:" + "1" * 64,
        command=["/usr/bin/tini", "-g", "--", "prefect", "flow-run", "execute"],
        resources={"requests": {"cpu": 0.5, "memoryInGB": 1.5}},
        environmentVariables=[{"name": "A", "value": "1"}, {"name": "K", "secureValue": "s"}],
    )
    resource["identity"] = {
        "type": "UserAssigned",
        "userAssignedIdentities": {"/subscriptions/s/resourceGroups/r/providers/x/y/id": {}},
    }
    resource["properties"]["subnetIds"] = [{"id": "/subscriptions/s/subnets/aci"}]
    parameters = {"location": "local", "container_group_name": "g", "container_name": "c"}
    return evaluate(resource, Scope("s", "r", "local", "d", {}, parameters))


def test_what_aci_takes_passes_fractional_cpu_included(group):
    assert SCHEMAS.check(group) == []
    assert ("ResourceRequests", "cpu") in DEVIATIONS


def test_a_misspelt_property_is_named_with_its_path(group):
    container = group["properties"]["containers"][0]["properties"]
    container["comand"] = container.pop("command")
    [problem] = SCHEMAS.check(group)
    assert problem.path == "properties.containers[0].properties.comand"
    assert (
        "Could not find member 'comand' on object of type 'ContainerProperties'" in problem.message
    )


def test_a_wrong_type_and_a_missing_property_are_named(group):
    container = group["properties"]["containers"][0]["properties"]
    container["resources"]["requests"]["cpu"] = "lots"
    del container["image"]
    problems = {p.path: p.message for p in SCHEMAS.check(group)}
    assert (
        "is not of type 'number'"
        in problems["properties.containers[0].properties.resources.requests.cpu"]
    )
    assert "'image' is a required property" in problems["properties.containers[0].properties"]


def test_an_api_version_without_a_schema_is_refused(group):
    group["apiVersion"] = "2001-01-01"
    [problem] = SCHEMAS.check(group)
    assert "2001-01-01" in problem.message and "2022-09-01" in problem.message
