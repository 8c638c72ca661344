import json
import os
import subprocess
import sys
import time

import httpx
import pytest

from arm.validation import SCHEMAS_DIR, load_schemas
from image_builder.local_registry import free_port
from prefect_aci.core.paths import PROJECT_ROOT
from prefect_aci.local_aci.expressions import Scope, evaluate

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
    """`prefect server start` of this environment in a subprocess, on a free loopback port, its
    home in a temporary folder; yields its API URL."""
    folder = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
        "PREFECT_HOME": str(folder / "home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
    }
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
    with (folder / "server.log").open("ab") as log:
        server = subprocess.Popen(
            [*command, "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, (folder / "server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, (folder / "server.log").read_text()[-2000:]
            time.sleep(0.5)
        yield api
    finally:
        server.terminate()
        server.wait(30)
