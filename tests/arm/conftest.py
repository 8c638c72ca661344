import json

import pytest

from arm.validation import SCHEMAS_DIR, load_schemas
from prefect_aci.core.paths import PROJECT_ROOT

TEMPLATE = PROJECT_ROOT / "arm" / "azuredeploy.json"
ROLE = PROJECT_ROOT / "arm" / "prefect-aci-role.json"
LINKED_ROLE = PROJECT_ROOT / "arm" / "prefect-aci-linked-role.json"


@pytest.fixture(scope="session")
def template() -> dict:
    return json.loads(TEMPLATE.read_text())


@pytest.fixture(scope="session")
def schemas():
    return load_schemas(SCHEMAS_DIR)


def resources_of(template: dict, resource_type: str) -> list[dict]:
    return [r for r in template["resources"] if r["type"] == resource_type]


def worker_group(template: dict) -> dict:
    [group] = resources_of(template, "Microsoft.ContainerInstance/containerGroups")
    return group
