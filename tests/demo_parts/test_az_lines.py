"""The lines `prefect-aci demo az` prints for a stack (prefect_aci.demo.stack.az_setup), without
the stack running: az's config folder in the state folder, the stack's CA bundle and proxy, the
deployer's secret read from its file and never printed, the cloud registered at the stack's door.
tests/demo/test_az.py runs them on the demo stack."""

import pytest
from rich.console import Console

from prefect_aci.core.errors import UserError
from prefect_aci.demo import stack
from prefect_aci.demo.local_azure import make_local_side
from prefect_aci.demo.state import AZURE_PROXY, Stack


def a_stack(root, proxy: bool = True) -> Stack:
    made = Stack(None, root, Console(quiet=True))
    made.state.ports.update({"prefect": 4321, "local-aci": 4443})
    if proxy:
        made.state.ports[AZURE_PROXY] = 3129
    made.state.prefix = "172.29.8"
    made.save()
    make_local_side(
        made.local_azure,
        made.id,
        "net",
        made.state.stand_in_address,
        blob_endpoint="https://172.29.8.1:1/devstoreaccount1",
        addresses=(made.state.gateway,),
    )
    return made


def test_demo_az_sets_az_up_in_the_state_folder_and_never_prints_the_secret(tmp_path):
    made = a_stack(tmp_path / "stack")
    lines = stack.az_setup(None, made.root)
    secret_file = (made.local_azure / "stand-in" / "deployer-secret").resolve()
    assert f"export AZURE_CONFIG_DIR={(made.root / 'az').resolve()}" in lines
    assert f"export REQUESTS_CA_BUNDLE={(made.local_azure / 'tls' / 'bundle.pem').resolve()}" in (
        lines
    )
    assert "export HTTPS_PROXY=http://127.0.0.1:3129 NO_PROXY=127.0.0.1,localhost" in lines
    assert "export IDENTITY_ENDPOINT=https://127.0.0.1:4443/_local/msi/token" in lines
    assert f'export IDENTITY_HEADER="$(cat {secret_file})"' in lines
    register = next(line for line in lines if line.startswith("az cloud register"))
    assert "--endpoint-resource-manager https://127.0.0.1:4443/" in register
    assert "az cloud set --name prefect-aci-local --output none" in lines
    assert "az login --identity --output none" in lines
    printed = "\n".join(lines)
    assert secret_file.read_text().strip() not in printed
    assert "~/.azure" not in printed and "$HOME" not in printed


def test_demo_az_of_a_folder_with_no_stack_says_what_to_run(tmp_path):
    with pytest.raises(UserError, match="make demo"):
        stack.az_setup(None, tmp_path)


def test_demo_az_of_a_stack_started_without_the_proxy_says_to_start_it_afresh(tmp_path):
    made = a_stack(tmp_path / "stack", proxy=False)
    with pytest.raises(UserError, match="without the proxy"):
        stack.az_setup(None, made.root)
