import json

import pytest

from arm.validation import SCHEMAS_DIR, load_schemas
from image_builder.local_registry import free_port
from prefect_aci.core.paths import PROJECT_ROOT
from prefect_aci.local_aci.expressions import Scope, evaluate
from tests.conftest import server_process

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
    """The plain pool's worker (the standby pool's has a group of its own)."""
    [group] = [
        group
        for group in resources_of(template, "Microsoft.ContainerInstance/containerGroups")
        if group["name"] == "[variables('workerGroupName')]"
    ]
    return group


def worker_environment(template: dict, **given) -> dict[str, dict]:
    """The worker container's environment variables by name, as ARM evaluates them for the
    parameters ``given`` (the worker identity's clientId is "worker-client-id")."""
    group = worker_group(template)
    parameters = {"prefectApiUrl": "https://api.example/api", "workerImage": "img", **given}
    group_id = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg"
    identity = "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/prefect-worker-id"
    references = {(group_id + identity).lower(): {"clientId": "worker-client-id"}}
    scope = Scope(
        "00000000-0000-0000-0000-000000000001",
        "rg",
        "westeurope",
        "d",
        template,
        parameters,
        references,
    )
    container = group["properties"]["containers"][0]["properties"]
    return {v["name"]: v for v in evaluate(container["environmentVariables"], scope)}


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory):
    """A Prefect server of the sweep's tests' own (server_process), without its UI; yields its
    API URL."""
    folder = tmp_path_factory.mktemp("prefect-server")
    with server_process(folder, free_port(), {"PREFECT_SERVER_UI_ENABLED": "false"}) as api:
        yield api
