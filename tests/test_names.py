"""Names that cross stages are defined once (prefect_aci.core.names); the places that must repeat
them (the self-contained flow file, the ARM template) agree with it."""

import json

from flows.key_vault_demo import flow as demo_flow
from prefect_aci.core import names
from prefect_aci.core.paths import PROJECT_ROOT

TEMPLATE = json.loads((PROJECT_ROOT / "arm" / "azuredeploy.json").read_text())


def test_flow_file_reads_the_secret_and_variable_registration_writes():
    assert demo_flow.DEMO_SECRETS == [names.DEMO_SECRET]
    assert demo_flow.KEY_VAULT_VARIABLE == names.KEY_VAULT_VARIABLE


def test_flow_entrypoint_names_the_flow_in_the_flow_file():
    path, function = names.FLOW_ENTRYPOINT.split(":")
    assert (PROJECT_ROOT / "flows" / path).is_file()
    flow = getattr(demo_flow, function)
    assert flow.name == names.FLOW_NAME
    assert path.split("/")[0] == names.FLOW_FOLDER


def test_template_creates_the_secret_and_defaults_the_demo_reads():
    secrets = [
        r["name"] for r in TEMPLATE["resources"] if r["type"] == "Microsoft.KeyVault/vaults/secrets"
    ]
    assert any(f"'{names.DEMO_SECRET}'" in name for name in secrets)
    parameters = TEMPLATE["parameters"]
    assert parameters["flowCodeContainerName"]["defaultValue"] == names.FLOW_CODE_CONTAINER
    assert parameters["workPoolName"]["defaultValue"] == names.DEFAULT_WORK_POOL
