"""Start, wire and stop the local stack: the real `azure-container-instance` worker running flow
runs on this machine, against local stand-ins for Azure. What it is made of, and in which order,
is prefect_aci.demo.parts; this is the loop over them.

Two state folders (a user's demo and a test's) never touch each other's parts.
"""

import json
import shlex
from pathlib import Path

import docker
from rich.console import Console

from image_builder.probe import require_image
from prefect_aci.core.console import Step
from prefect_aci.core.errors import UserError
from prefect_aci.core.paths import PROJECT_ROOT
from prefect_aci.core.records import ImageRecord
from prefect_aci.demo.flow_run import DemoRun
from prefect_aci.demo.local_azure import load_side
from prefect_aci.demo.parts import (
    NODE_PREFIX,
    PARTS,
    SECRET_SETTINGS,
    Report,
    deploy_all_command,
    local_azure_settings,
)
from prefect_aci.demo.state import (
    AUTH_STRING_FILE,
    Stack,
    Start,
    State,
    network_name,
    server_container,
    stack_id,
    stand_in_container,
)
from prefect_aci.local_aci.config import LABEL

__all__ = [
    "NODE_PREFIX",
    "State",
    "auth_string_file",
    "down",
    "network_name",
    "server_container",
    "stack_id",
    "stand_in_container",
    "status",
    "up",
]


def up(
    client: docker.DockerClient,
    record: ImageRecord,
    server: ImageRecord,
    root: Path,
    console: Console,
    port: int | None = None,
    standby: int = 0,
) -> tuple[State, DemoRun]:
    """Start the stack afresh, wire it, run the demo flow once; return the state and the run.

    ``record`` is the image flow runs and the worker run (pushed to the stack's registry);
    ``server`` its server variant, with the UI, for the Prefect server and the stand-ins.
    ``standby``: ready members of an ACI standby pool (0: none); with one, the demo flow runs
    warm, through the standby work pool.
    """
    require_image(client, record.image_id)
    require_image(client, server.image_id)
    reap_dead_stacks(client, console)
    down(client, root, console)
    stack = Stack(client, root, console)
    stack.state.standby = standby
    start = Start(record, server, port, Step(console), standby)
    for part in PARTS:
        part.plan(stack, start)
    stack.save()
    for part in PARTS:
        part.start(stack, start)
    run = DemoRun(**json.loads((root / "run.json").read_text()))
    return stack.state, run


def reap_dead_stacks(client: docker.DockerClient, console: Console) -> None:
    """Remove the container groups' containers of stacks whose stand-in has stopped (the machine
    or its Docker engine restarted under them): a group's restart policy brings its containers
    back with the engine, and a worker whose stack is gone would poll a dead server for ever. The
    dead stack's own containers and folder stay for its `demo down`."""
    stand_ins = client.containers.list(all=True, filters={"label": f"{LABEL}.role=stand-in"})
    for stand_in in stand_ins:
        if stand_in.status not in ("exited", "dead"):
            continue
        dead = stand_in.labels.get(f"{LABEL}.stack")
        groups = client.containers.list(
            all=True, filters={"label": [f"{LABEL}.stack={dead}", f"{LABEL}.group"]}
        )
        for container in groups:
            container.remove(force=True)
        if groups:
            console.print(
                f"Removed {len(groups)} container(s) of the stopped stack {dead} "
                "(its stand-in is not running)."
            )


def down(client: docker.DockerClient, root: Path, console: Console) -> None:
    """Stop every part, the last started first; what the state file lost is found by labels."""
    stack = Stack.load(client, root, console)
    for part in reversed(PARTS):
        part.stop(stack)
    stack.forget()


def deploy_all_settings(client: docker.DockerClient, root: Path) -> tuple[dict[str, str], str]:
    """The shell settings that point `prefect-aci deploy-all` at the local Azure of the stack in
    ``root`` (each secret as a reading of the 0600 file that holds it, never its value), and the
    command that deploys its image there."""
    stack = Stack.load(client, root, Console(quiet=True))
    if not stack.state.ports or not (stack.local_azure / "stand-in").is_dir():
        raise UserError(f"no demo stack was started from {root}; `make demo` starts one")
    settings = local_azure_settings(stack, load_side(stack.local_azure))
    for name, value in settings.items():
        if name in SECRET_SETTINGS:
            file = (stack.root / SECRET_SETTINGS[name]).resolve()
            settings[name] = f'"$(cat {shlex.quote(str(file))})"'
        else:
            settings[name] = shlex.quote(value)
    return settings, shlex.join(deploy_all_command(stack)[3:])


# The name under which `prefect-aci demo az` registers the stack's local Azure with the Azure CLI.
AZ_CLOUD = "prefect-aci-local"


def az_setup(client: docker.DockerClient, root: Path) -> list[str]:
    """The shell lines that set the Azure CLI up for the local Azure of the stack in ``root``:
    a config folder of its own in the state folder (never ~/.azure), the stack's CA bundle, the
    proxy that takes it to Azure's names (a vault's), the cloud registered from Resource
    Manager's metadata endpoint, and the deployer signed in (`az login --identity`, the App
    Service managed identity protocol, its secret read from its 0600 file, never printed)."""
    stack = Stack.load(client, root, Console(quiet=True))
    if not stack.state.ports or not (stack.local_azure / "stand-in").is_dir():
        raise UserError(f"no demo stack was started from {root}; `make demo` starts one")
    if stack.state.azure_proxy is None:
        raise UserError(
            f"the demo stack in {root} was started by an older prefect-aci, without the proxy "
            "to Azure's names; `make demo` starts it afresh"
        )
    side = load_side(stack.local_azure)
    endpoint = stack.state.local_aci
    secret = (stack.root / SECRET_SETTINGS["IDENTITY_HEADER"]).resolve()
    venv = PROJECT_ROOT / ".venv-az" / "bin"
    q = shlex.quote
    lines = [
        f"# The Azure CLI on the local Azure of the demo stack in {root}, in this shell only.",
        "unset AZURE_CLIENT_ID AZURE_CLIENT_SECRET AZURE_TENANT_ID IDENTITY_SERVER_THUMBPRINT "
        "IMDS_ENDPOINT MSI_ENDPOINT MSI_SECRET",
    ]
    if venv.is_dir():
        lines.append(f'export PATH={q(str(venv))}:"$PATH"')
    lines += [
        f"export AZURE_CONFIG_DIR={q(str((stack.root / 'az').resolve()))}",
        "export AZURE_CORE_COLLECT_TELEMETRY=false",
        f"export REQUESTS_CA_BUNDLE={q(str(side.tls.bundle.resolve()))}",
        f"export HTTPS_PROXY={q(stack.state.azure_proxy)} NO_PROXY=127.0.0.1,localhost",
        f"export IDENTITY_ENDPOINT={q(endpoint + '/_local/msi/token')}",
        f'export IDENTITY_HEADER="$(cat {q(str(secret))})"',
        f"az cloud register --name {AZ_CLOUD} --endpoint-resource-manager {q(endpoint + '/')} "
        f"--output none 2>/dev/null || az cloud update --name {AZ_CLOUD} "
        f"--endpoint-resource-manager {q(endpoint + '/')} --output none",
        f"az cloud set --name {AZ_CLOUD} --output none",
        "az login --identity --output none",
        f"# then, e.g.: az container list --resource-group {q(side.config.resource_group)} "
        "--output table",
    ]
    return lines


def resource_group(root: Path) -> str:
    """The resource group of the local Azure of the stack in ``root``."""
    return load_side(root / "local-azure").config.resource_group


def auth_string_file(root: Path) -> Path:
    """Where the stack in ``root`` keeps its Prefect server's basic-auth string (mode 0600),
    which the UI asks for when the server asks for one."""
    return root / AUTH_STRING_FILE


def status(client: docker.DockerClient, root: Path) -> list[Report]:
    """(part, where, running) for each part the state file names; empty when none was started."""
    stack = Stack.load(client, root, Console(quiet=True))
    if not stack.state.ports:
        return []
    running = {c.name: c.status == "running" for c in stack.containers()}
    return [line for part in PARTS for line in part.report(stack, running)]
