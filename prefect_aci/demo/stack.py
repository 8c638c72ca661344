"""Start, wire and stop the local stack: the real `azure-container-instance` worker running flow
runs on this machine, against local stand-ins for Azure.

What runs, all labelled with the stack's id and listed in <state dir>/state.json so that `down`
(and the next `up`) removes exactly that, and `status` can say what runs where:

- Debian's docker-registry on 127.0.0.1 (ACR): the image is pushed there, groups pull it by digest;
- a Docker network (the delegated subnet) for everything below;
- Azurite on the host's address on that network, HTTPS with OAuth (Blob storage for flow code);
- a Prefect server from our image, UI included, published on 127.0.0.1 (Prefect Cloud);
- the local ACI stand-in, in a container of our image (Resource Manager, Container Instances, Key
  Vault, IMDS; prefect_aci.local_aci), reached at Azure's own host names;
- the IMDS router at 169.254.169.254, shared by all stacks on this machine;
- the worker, a container group created through the stand-in's Container Instances API from the
  ARM template's own worker resource, as `prefect-aci azure deploy` creates it on Azure.

Two state folders (a user's demo and a test's) never touch each other's parts.
"""

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path

import docker
from docker.errors import APIError, NotFound
from rich.console import Console

from arm.deploy import WORKER_CONTAINER
from image_builder.local_registry import LocalRegistry, free_port, wait_for_port
from image_builder.probe import require_image
from image_builder.push import PushPlan, push_image
from prefect_aci.core.console import Step
from prefect_aci.core.engine import make_network
from prefect_aci.core.errors import UserError, last_line
from prefect_aci.core.paths import BUILD_DIR, PROJECT_ROOT
from prefect_aci.core.records import ImageRecord, write_record
from prefect_aci.demo import azurite, wiring
from prefect_aci.demo.local_azure import LocalSide, make_local_side
from prefect_aci.local_aci import imds_router
from prefect_aci.local_aci.config import LABEL

# Prefect's usual port: the UI's address in Prefect's own docs, taken when it is free.
PREFERRED_PORT = 4200
# Azurite comes from npm once per checkout, whichever state folder the stack uses.
NODE_PREFIX = BUILD_DIR / "node"
# Candidate subnets for a stack's network, tried in turn until one overlaps nothing.
SUBNETS = [f"172.{second}.{third}.0/24" for second in (29, 30) for third in range(8, 250, 8)]
SOURCE_IN_CONTAINER = "/opt/prefect-aci-src"
STAND_IN_FOLDER = "/local-aci"
DOCKER_SOCKET = "/var/run/docker.sock"
REPORT_LINE = re.compile(r"^  (created|updated|unchanged|would-\w+) ")


def stack_id(root: Path) -> str:
    """One id per state folder: two stacks on one machine must not remove each other's parts."""
    return hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:10]


def server_container(root: Path) -> str:
    return f"prefect-aci-demo-{stack_id(root)}"


def stand_in_container(root: Path) -> str:
    return f"prefect-aci-local-aci-{stack_id(root)}"


def network_name(root: Path) -> str:
    return f"prefect-aci-{stack_id(root)}"


@dataclass
class State:
    pids: dict[str, int] = field(default_factory=dict)
    containers: list[str] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)  # where a part listens, by name
    network: str | None = None
    worker_group: str | None = None
    flow_run_id: str | None = None

    @classmethod
    def load(cls, path: Path) -> "State":
        return cls(**json.loads(path.read_text())) if path.is_file() else cls()

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @property
    def ui(self) -> str:
        return f"http://127.0.0.1:{self.ports['prefect']}"

    @property
    def api(self) -> str:
        return f"{self.ui}/api"

    @property
    def local_aci(self) -> str:
        return f"https://127.0.0.1:{self.ports['local-aci']}"

    def flow_run_page(self) -> str | None:
        return f"{self.ui}/runs/flow-run/{self.flow_run_id}" if self.flow_run_id else None


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        # As the Docker engine binds it: connections of an earlier stack in TIME_WAIT are fine.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def choose_port(wanted: int | None) -> int:
    """``wanted`` if given (it must be free); else 4200 when free, else any free port."""
    if wanted:
        if not port_is_free(wanted):
            raise UserError(
                f"port {wanted} on 127.0.0.1 is taken; pass another --port, or leave it out to "
                "take 4200 or any free port"
            )
        return wanted
    return PREFERRED_PORT if port_is_free(PREFERRED_PORT) else free_port()


def _spawn(command: list[str], log: Path, env: dict[str, str] | None = None) -> int:
    """A background process that outlives `make demo`, in its own session for a clean stop."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    return process.pid


def _alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _wait_http(url: str, timeout: float, what: str, context=None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5, context=context):  # noqa: S310 (loopback)
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            if isinstance(exc, urllib.error.HTTPError) and exc.code < 500:
                return
            if time.monotonic() > deadline:
                raise UserError(f"{what} did not answer at {url} within {timeout:.0f}s") from None
            time.sleep(0.5)


def _stop_group(pid: int, grace: float = 10.0) -> bool:
    """SIGTERM the process group `_spawn` made, SIGKILL it after ``grace`` seconds."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return False
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.2)
    with suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    return True


def _stack_containers(client: docker.DockerClient, root: Path) -> list:
    return client.containers.list(all=True, filters={"label": [f"{LABEL}.stack={stack_id(root)}"]})


def down(client: docker.DockerClient, root: Path, console: Console) -> None:
    state = State.load(root / "state.json")
    for name, pid in state.pids.items():
        if _stop_group(pid):
            console.print(f"stopped {name} (pid {pid})")
    for container in _stack_containers(client, root):
        with suppress(NotFound):
            container.remove(force=True)
            console.print(f"removed container {container.name}")
    for name in (network_name(root), state.network):
        if name:
            with suppress(NotFound):
                client.networks.get(name).remove()
                console.print(f"removed network {name}")
    imds_router_down(client, console)
    (root / "state.json").unlink(missing_ok=True)


def status(client: docker.DockerClient, root: Path) -> list[tuple[str, str, bool]]:
    """(part, where, running) for each part the state file names; empty when none was started."""
    state = State.load(root / "state.json")
    if not state.ports:
        return []
    parts = []
    for name, pid in state.pids.items():
        address = state.addresses.get(name, "127.0.0.1")
        where = f"{address}:{state.ports[name]}" if name in state.ports else ""
        parts.append((name, f"{where} (pid {pid})".strip(), _alive(pid)))
    running = {c.name: c.status == "running" for c in _stack_containers(client, root)}
    parts.append(
        (
            "prefect server",
            f"UI {state.ui}, API {state.api}",
            running.get(server_container(root), False),
        )
    )
    if "local-aci" in state.ports:
        parts.append(
            (
                "local ACI",
                f"{state.local_aci} (Resource Manager, Container Instances, Key Vault, IMDS)",
                running.get(stand_in_container(root), False),
            )
        )
    if state.worker_group:
        worker = f"-{state.worker_group}-{WORKER_CONTAINER}"
        parts.append(
            (
                "ACI worker",
                f"container group {state.worker_group}",
                any(up for name, up in running.items() if name.endswith(worker)),
            )
        )
    if state.flow_run_id:
        parts.append(("last demo flow run", state.flow_run_page() or "", True))
    return parts


def _endpoint(client: docker.DockerClient, network: str, **settings) -> dict:
    return {network: client.api.create_endpoint_config(**settings)}


def _source_mounts() -> dict:
    """The stand-ins run this checkout's code in a container of our image, read-only."""
    return {str(PROJECT_ROOT): {"bind": SOURCE_IN_CONTAINER, "mode": "ro"}}


def _socket_group() -> list[int]:
    return [os.stat(DOCKER_SOCKET).st_gid] if os.path.exists(DOCKER_SOCKET) else []


def imds_router_up(client: docker.DockerClient, image: str) -> None:
    """The shared link-local network and the router at 169.254.169.254, if not running yet."""
    try:
        network = client.networks.get(imds_router.NETWORK)
    except NotFound:
        pool = docker.types.IPAMPool(subnet=imds_router.SUBNET, gateway="169.254.169.1")
        network = client.networks.create(
            imds_router.NETWORK,
            driver="bridge",
            internal=True,
            ipam=docker.types.IPAMConfig(pool_configs=[pool]),
            # No address on the host, so no route: the host's own metadata service (on a cloud
            # VM) is left alone.
            options={"com.docker.network.bridge.inhibit_ipv4": "true"},
            labels={f"{LABEL}.role": "imds"},
        )
    with suppress(NotFound):
        router = client.containers.get(imds_router.ROUTER_NAME)
        if router.status == "running":
            return
        router.remove(force=True)
    router = client.containers.create(
        image,
        ["python", "-m", "prefect_aci.local_aci.imds_router"],
        name=imds_router.ROUTER_NAME,
        detach=True,
        environment={"PYTHONPATH": SOURCE_IN_CONTAINER},
        volumes={**_source_mounts(), DOCKER_SOCKET: {"bind": DOCKER_SOCKET, "mode": "rw"}},
        group_add=_socket_group(),
        network=network.name,
        networking_config=_endpoint(client, network.name, ipv4_address=imds_router.ADDRESS),
        sysctls={"net.ipv4.ip_unprivileged_port_start": "0"},
        labels={f"{LABEL}.role": "imds-router"},
        restart_policy={"Name": "unless-stopped"},
    )
    router.start()


def imds_router_down(client: docker.DockerClient, console: Console) -> None:
    """Remove the router and its network once no stack uses them."""
    try:
        network = client.networks.get(imds_router.NETWORK)
    except NotFound:
        return
    network.reload()
    users = [
        c
        for c in network.attrs.get("Containers", {}).values()
        if not c.get("Name", "").startswith(imds_router.ROUTER_NAME)
    ]
    if users:
        return
    with suppress(NotFound):
        client.containers.get(imds_router.ROUTER_NAME).remove(force=True)
    with suppress(NotFound, APIError):
        network.remove()
        console.print(f"removed network {imds_router.NETWORK} (no stack uses it)")


def deployer_env(state: State, side: LocalSide) -> dict[str, str]:
    """The environment of a process that signs in to the local Azure as the deployer
    (DefaultAzureCredential, App Service managed identity protocol) and trusts its certificate,
    for the calls a user makes from their machine: the flow-code upload, the demo deployment
    (which reads the code back), the worker's container group."""
    # A service principal or az login of this machine must not sign in to the local Azure.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
    return {**env, **side.deployer_env(state.local_aci), "PREFECT_API_URL": state.api}


def up(
    client: docker.DockerClient,
    record: ImageRecord,
    server: ImageRecord,
    root: Path,
    flows_dir: Path,
    console: Console,
    port: int | None = None,
) -> tuple[State, wiring.DemoRun]:
    """Start the stack, wire it, run the demo flow once; return the state and the run.

    ``record`` is the image flow runs and the worker run (pushed to the stack's registry);
    ``server`` its server variant, with the UI, for the Prefect server and the stand-ins.
    """
    require_image(client, record.image_id)
    require_image(client, server.image_id)
    down(client, root, console)
    state = State()
    state_file = root / "state.json"
    stack = stack_id(root)
    labels = {f"{LABEL}.stack": stack}
    step = Step(console)

    registry = LocalRegistry(root / "registry", port=free_port())
    state.ports["registry"] = registry.port

    def start_registry() -> None:
        state.pids["registry"] = _spawn(
            [registry.binary(), "serve", str(registry.root / "config.yml")],
            root / "logs" / "registry.log",
        )
        state.save(state_file)
        wait_for_port(registry.port)

    step(f"starting a local OCI registry (ACR) on {registry.host}", start_registry)
    pushed = step(
        "pushing the image to it",
        lambda: push_image(
            client,
            record,
            PushPlan(registry=registry.host, repository="prefect-aci", tags=["demo"], login=None),
            console,
        ),
    )
    write_record(root / "image.json", pushed)

    network, prefix = step(
        "making the stack's Docker network (the delegated subnet)",
        lambda: make_network(client, network_name(root), SUBNETS, {f"{LABEL}.stack": stack}),
    )
    state.network = network.name
    state.save(state_file)
    gateway, stand_in_address = f"{prefix}.1", f"{prefix}.2"
    blob_port = free_port()
    state.ports["azurite"] = blob_port
    state.addresses["azurite"] = gateway
    side = make_local_side(
        root / "local-azure", stack, network.name, gateway, stand_in_address, blob_port
    )

    def start_azurite() -> None:
        binary = azurite.install(NODE_PREFIX)
        state.pids["azurite"] = _spawn(
            azurite.command(
                binary, blob_port, root / "azurite", (side.tls.certificate, side.tls.key), gateway
            ),
            root / "logs" / "azurite.log",
        )
        state.save(state_file)
        wait_for_port(blob_port, timeout=60, address=gateway)

    step(f"starting Azurite (Blob storage, OAuth) on {gateway}:{blob_port}", start_azurite)

    state.ports["prefect"] = choose_port(port)

    def start_server() -> None:
        container = client.containers.create(
            server.image_id,
            ["prefect", "server", "start", "--host", "0.0.0.0"],  # noqa: S104 (in the container)
            name=server_container(root),
            detach=True,
            environment={
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                # The UI runs in the user's browser and calls the API named by /ui-settings,
                # which by default is 127.0.0.1:4200 whatever port was published. A path
                # relative to the page follows the port the browser used (also through an SSH
                # tunnel); PREFECT_UI_URL makes the links Prefect prints point at the UI.
                "PREFECT_UI_API_URL": "/api",
                "PREFECT_UI_URL": state.ui,
            },
            ports={"4200/tcp": ("127.0.0.1", state.ports["prefect"])},
            network=network.name,
            networking_config=_endpoint(
                client, network.name, aliases=[wiring.SERVER_ALIAS], ipv4_address=f"{prefix}.3"
            ),
            labels=labels,
        )
        container.start()
        state.containers.append(container.id)
        state.save(state_file)
        _wait_http(f"{state.api}/health", 180, "the Prefect server")

    step(f"starting a Prefect server from our image, UI on {state.ui}", start_server)

    state.ports["local-aci"] = free_port()

    def start_local_aci() -> None:
        imds_router_up(client, server.image_id)
        container = client.containers.create(
            server.image_id,
            [
                "python",
                "-m",
                "prefect_aci.local_aci.server",
                STAND_IN_FOLDER,
                f"{SOURCE_IN_CONTAINER}/arm/schemas",
            ],
            name=stand_in_container(root),
            detach=True,
            environment={"PYTHONPATH": SOURCE_IN_CONTAINER},
            volumes={
                **_source_mounts(),
                str(side.folder.resolve()): {"bind": STAND_IN_FOLDER, "mode": "ro"},
                DOCKER_SOCKET: {"bind": DOCKER_SOCKET, "mode": "rw"},
            },
            # The stand-in reads its keys (mode 0600) as the user who made them, and drives the
            # Docker engine through its socket's group.
            user=f"{os.getuid()}:{os.getgid()}",
            group_add=_socket_group(),
            # Azure's endpoints listen on 443 and 80, below 1024.
            sysctls={"net.ipv4.ip_unprivileged_port_start": "0"},
            ports={"443/tcp": ("127.0.0.1", state.ports["local-aci"])},
            network=network.name,
            networking_config=_endpoint(client, network.name, ipv4_address=stand_in_address),
            labels={**labels, f"{LABEL}.role": "stand-in"},
        )
        client.networks.get(imds_router.NETWORK).connect(container)
        container.start()
        state.containers.append(container.id)
        state.save(state_file)
        try:
            _wait_http(
                f"{state.local_aci}/_local/health", 60, "the local ACI", side.tls.client_context()
            )
        except UserError:
            tail = container.logs(tail=15).decode(errors="replace").strip()
            console.print(tail, style="dim", markup=False, highlight=False)
            raise

    step(
        f"starting the local ACI (Resource Manager, Container Instances, Key Vault, IMDS) on "
        f"{state.local_aci}",
        start_local_aci,
    )

    def register_and_start_worker() -> str:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "prefect_aci.demo.wiring",
                str(root / "local-azure"),
                state.api,
                state.local_aci,
                str(root / "image.json"),
                str(flows_dir),
            ],
            env=deployer_env(state, side),
            capture_output=True,
            text=True,
            timeout=600,
        )
        lines = done.stdout.rstrip().splitlines()
        # Registration's report, not Prefect's own deployment table.
        for line in lines[:-1]:
            if REPORT_LINE.match(line):
                console.print(line, highlight=False)
        if done.returncode != 0 or not lines:
            raise UserError(
                "registering the Prefect side or starting the worker failed: "
                + last_line(done.stderr)
            )
        return lines[-1]

    state.worker_group = step(
        "registering the Prefect side (prefect-aci register: ACI pool, blocks, variable), "
        "flow code to Azurite, the demo deployment, and the ACI worker from the ARM template's "
        "worker resource",
        register_and_start_worker,
    )
    state.save(state_file)
    run = step(
        "running the demo flow through the ACI worker and waiting for it to finish",
        lambda: wiring.run(state.api),
    )
    state.flow_run_id = run.flow_run_id
    state.save(state_file)
    return state, run
