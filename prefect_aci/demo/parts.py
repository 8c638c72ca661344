"""The parts of a local stack, in the order `up` starts them (`down` stops them the other way):

- Debian's docker-registry on 127.0.0.1 (ACR): the image is pushed there, groups pull it by digest;
- a Docker network (the delegated subnet) for everything below;
- the local Azure's files: subscription, identities, roles, the vault's secret, TLS;
- Azurite on the host's address on that network, HTTPS with OAuth (Blob storage for flow code);
- a Prefect server from our image, UI included, published on 127.0.0.1 (Prefect Cloud);
- local ACI, in a container of our image (Resource Manager, Container Instances, Key Vault, IMDS;
  prefect_aci.local_aci), reached at Azure's own host names, with the IMDS router at
  169.254.169.254 that all stacks on this machine share;
- the wiring: the Prefect side registered by the same code as on Azure, and the worker, a
  container group created through local ACI from the ARM template's own worker resource;
- the demo flow run, through that worker.

Each part reserves its ports before any part starts (`plan`), then starts, printing its steps;
it stops what it started and reports whether it runs.
"""

import json
import os
import subprocess
import sys
from contextlib import suppress
from dataclasses import asdict

import docker
from docker.errors import APIError, NotFound

from arm.deploy import WORKER_CONTAINER
from image_builder.local_registry import LocalRegistry, free_port, wait_for_port
from image_builder.push import PushPlan, push_image
from prefect_aci.core.engine import make_network
from prefect_aci.core.errors import UserError, last_line
from prefect_aci.core.paths import BUILD_DIR, PROJECT_ROOT
from prefect_aci.core.records import write_record
from prefect_aci.demo import azurite, wiring
from prefect_aci.demo.local_azure import LocalSide, load_side, make_local_side
from prefect_aci.demo.processes import alive, port_is_free, spawn, stop, wait_http
from prefect_aci.demo.state import (
    Stack,
    Start,
    network_name,
    server_container,
    stand_in_container,
)
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

Report = tuple[str, str, bool]  # (part, where, running)


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


class Part:
    """One part of the stack. The defaults: nothing to reserve, stop or report."""

    def plan(self, stack: Stack, start: Start) -> None:
        """Reserve ports, before any part starts: a taken port fails `up` at once."""

    def start(self, stack: Stack, start: Start) -> None:
        raise NotImplementedError

    def stop(self, stack: Stack) -> None:
        """Stop what `start` started, also when `start` did not finish or the state is gone."""

    def report(self, stack: Stack, running: dict[str, bool]) -> list[Report]:
        """Where the part runs and whether it does; ``running`` is the stack's containers."""
        return []


class Process(Part):
    """A part that is a background process of this machine, listening on a port."""

    name = ""

    def stop(self, stack: Stack) -> None:
        pid = stack.state.pids.get(self.name)
        if pid and stop(pid):
            stack.console.print(f"stopped {self.name} (pid {pid})")

    def report(self, stack: Stack, running: dict[str, bool]) -> list[Report]:
        pid = stack.state.pids.get(self.name)
        if pid is None:
            return []
        address = stack.state.addresses.get(self.name, "127.0.0.1")
        port = stack.state.ports.get(self.name)
        where = f"{address}:{port}" if port else ""
        return [(self.name, f"{where} (pid {pid})".strip(), alive(pid))]


class Registry(Process):
    name = "registry"

    def plan(self, stack: Stack, start: Start) -> None:
        stack.state.ports[self.name] = free_port()

    def start(self, stack: Stack, start: Start) -> None:
        registry = LocalRegistry(stack.root / "registry", port=stack.state.ports[self.name])

        def serve() -> None:
            stack.state.pids[self.name] = spawn(
                [registry.binary(), "serve", str(registry.root / "config.yml")],
                stack.logs / "registry.log",
            )
            stack.save()
            wait_for_port(registry.port)

        start.step(f"starting a local OCI registry (ACR) on {registry.host}", serve)
        plan = PushPlan(registry=registry.host, repository="prefect-aci", tags=["demo"], login=None)
        pushed = start.step(
            "pushing the image to it",
            lambda: push_image(stack.client, start.record, plan, stack.console),
        )
        write_record(stack.image_record, pushed)


class Network(Part):
    def start(self, stack: Stack, start: Start) -> None:
        network, prefix = start.step(
            "making the stack's Docker network (the delegated subnet)",
            lambda: make_network(stack.client, network_name(stack.root), SUBNETS, stack.labels),
        )
        stack.state.network = network.name
        stack.state.prefix = prefix
        stack.save()

    def stop(self, stack: Stack) -> None:
        for name in dict.fromkeys((network_name(stack.root), stack.state.network)):
            if name:
                with suppress(NotFound):
                    stack.client.networks.get(name).remove()
                    stack.console.print(f"removed network {name}")


class LocalAzure(Part):
    """The local Azure's files, which local ACI, Azurite and the wiring read."""

    def start(self, stack: Stack, start: Start) -> None:
        state = stack.state
        make_local_side(
            stack.local_azure,
            stack.id,
            state.network,
            state.gateway,
            state.stand_in_address,
            state.ports[Azurite.name],
        )


class Azurite(Process):
    name = "azurite"

    def plan(self, stack: Stack, start: Start) -> None:
        stack.state.ports[self.name] = free_port()

    def start(self, stack: Stack, start: Start) -> None:
        state = stack.state
        gateway, port = state.gateway, state.ports[self.name]
        state.addresses[self.name] = gateway
        tls = load_side(stack.local_azure).tls

        def serve() -> None:
            binary = azurite.install(NODE_PREFIX)
            state.pids[self.name] = spawn(
                azurite.command(
                    binary, port, stack.root / "azurite", (tls.certificate, tls.key), gateway
                ),
                stack.logs / "azurite.log",
            )
            stack.save()
            wait_for_port(port, timeout=60, address=gateway)

        start.step(f"starting Azurite (Blob storage, OAuth) on {gateway}:{port}", serve)


def _endpoint(client: docker.DockerClient, network: str, **settings) -> dict:
    return {network: client.api.create_endpoint_config(**settings)}


def _remove(stack: Stack, container) -> None:
    with suppress(NotFound):
        container.remove(force=True)
        stack.console.print(f"removed container {container.name}")


def _container(stack: Stack, name: str) -> list:
    with suppress(NotFound):
        return [stack.client.containers.get(name)]
    return []


class PrefectServer(Part):
    name = "prefect"

    def plan(self, stack: Stack, start: Start) -> None:
        stack.state.ports[self.name] = choose_port(start.port)

    def start(self, stack: Stack, start: Start) -> None:
        state = stack.state

        def serve() -> None:
            container = stack.client.containers.create(
                start.server.image_id,
                ["prefect", "server", "start", "--host", "0.0.0.0"],  # noqa: S104 (in the container)
                name=server_container(stack.root),
                detach=True,
                environment={
                    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                    # The UI runs in the user's browser and calls the API named by /ui-settings,
                    # which by default is 127.0.0.1:4200 whatever port was published. A path
                    # relative to the page follows the port the browser used (also through an
                    # SSH tunnel); PREFECT_UI_URL makes the links Prefect prints point at the UI.
                    "PREFECT_UI_API_URL": "/api",
                    "PREFECT_UI_URL": state.ui,
                },
                ports={"4200/tcp": ("127.0.0.1", state.ports[self.name])},
                network=state.network,
                networking_config=_endpoint(
                    stack.client,
                    state.network,
                    aliases=[wiring.SERVER_ALIAS],
                    ipv4_address=f"{state.prefix}.3",
                ),
                labels=stack.labels,
            )
            container.start()
            state.containers.append(container.id)
            stack.save()
            wait_http(f"{state.api}/health", 180, "the Prefect server")

        start.step(f"starting a Prefect server from our image, UI on {state.ui}", serve)

    def stop(self, stack: Stack) -> None:
        for container in _container(stack, server_container(stack.root)):
            _remove(stack, container)

    def report(self, stack: Stack, running: dict[str, bool]) -> list[Report]:
        where = f"UI {stack.state.ui}, API {stack.state.api}"
        return [("prefect server", where, running.get(server_container(stack.root), False))]


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


def imds_router_down(stack: Stack) -> None:
    """Remove the router and its network once no stack uses them."""
    try:
        network = stack.client.networks.get(imds_router.NETWORK)
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
        stack.client.containers.get(imds_router.ROUTER_NAME).remove(force=True)
    with suppress(NotFound, APIError):
        network.remove()
        stack.console.print(f"removed network {imds_router.NETWORK} (no stack uses it)")


class LocalAci(Part):
    name = "local-aci"

    def plan(self, stack: Stack, start: Start) -> None:
        stack.state.ports[self.name] = free_port()

    def start(self, stack: Stack, start: Start) -> None:
        state = stack.state
        side = load_side(stack.local_azure)

        def serve() -> None:
            imds_router_up(stack.client, start.server.image_id)
            container = stack.client.containers.create(
                start.server.image_id,
                [
                    "python",
                    "-m",
                    "prefect_aci.local_aci.server",
                    STAND_IN_FOLDER,
                    f"{SOURCE_IN_CONTAINER}/arm/schemas",
                ],
                name=stand_in_container(stack.root),
                detach=True,
                environment={"PYTHONPATH": SOURCE_IN_CONTAINER},
                volumes={
                    **_source_mounts(),
                    str(side.folder.resolve()): {"bind": STAND_IN_FOLDER, "mode": "ro"},
                    DOCKER_SOCKET: {"bind": DOCKER_SOCKET, "mode": "rw"},
                },
                # The stand-in reads its keys (mode 0600) as the user who made them, and drives
                # the Docker engine through its socket's group.
                user=f"{os.getuid()}:{os.getgid()}",
                group_add=_socket_group(),
                # Azure's endpoints listen on 443 and 80, below 1024.
                sysctls={"net.ipv4.ip_unprivileged_port_start": "0"},
                ports={"443/tcp": ("127.0.0.1", state.ports[self.name])},
                network=state.network,
                networking_config=_endpoint(
                    stack.client, state.network, ipv4_address=state.stand_in_address
                ),
                labels={**stack.labels, f"{LABEL}.role": "stand-in"},
            )
            stack.client.networks.get(imds_router.NETWORK).connect(container)
            container.start()
            state.containers.append(container.id)
            stack.save()
            try:
                wait_http(
                    f"{state.local_aci}/_local/health",
                    60,
                    "the local ACI",
                    side.tls.client_context(),
                )
            except UserError:
                tail = container.logs(tail=15).decode(errors="replace").strip()
                stack.console.print(tail, style="dim", markup=False, highlight=False)
                raise

        start.step(
            "starting the local ACI (Resource Manager, Container Instances, Key Vault, IMDS) on "
            f"{state.local_aci}",
            serve,
        )

    def stop(self, stack: Stack) -> None:
        """The stand-in and every container group it ran (the worker's, flow runs' left over)."""
        server = server_container(stack.root)
        for container in stack.containers():
            if container.name != server:
                _remove(stack, container)
        imds_router_down(stack)

    def report(self, stack: Stack, running: dict[str, bool]) -> list[Report]:
        if self.name not in stack.state.ports:
            return []
        where = f"{stack.state.local_aci} (Resource Manager, Container Instances, Key Vault, IMDS)"
        return [("local ACI", where, running.get(stand_in_container(stack.root), False))]


def deployer_env(stack: Stack, side: LocalSide) -> dict[str, str]:
    """The environment of a process that signs in to the local Azure as the deployer
    (DefaultAzureCredential, App Service managed identity protocol) and trusts its certificate,
    for the calls a user makes from their machine: the flow-code upload, the demo deployment
    (which reads the code back), the worker's container group."""
    # A service principal or az login of this machine must not sign in to the local Azure.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
    local_aci = stack.state.local_aci
    return {**env, **side.deployer_env(local_aci), "PREFECT_API_URL": stack.state.api}


class Wiring(Part):
    """`prefect-aci register` and the rest of the Prefect side, then the worker, in a child
    process (see prefect_aci.demo.wiring) signed in as the deployer. It hands over through files
    in the state folder: the request in, the worker group's name out."""

    def start(self, stack: Stack, start: Start) -> None:
        request = wiring.Request(
            api=stack.state.api, local_aci=stack.state.local_aci, flows_dir=str(start.flows_dir)
        )
        wiring.write_request(stack.root, request)
        side = load_side(stack.local_azure)

        def wire() -> str:
            done = subprocess.run(
                [sys.executable, "-m", "prefect_aci.demo.wiring", str(stack.root)],
                env=deployer_env(stack, side),
                capture_output=True,
                text=True,
                timeout=600,
            )
            # Registration's report, not Prefect's own deployment table.
            for line in done.stdout.splitlines():
                if wiring.REPORT_LINE.match(line):
                    stack.console.print(line, highlight=False)
            answer = wiring.read_answer(stack.root)
            if done.returncode != 0 or answer is None:
                raise UserError(
                    "registering the Prefect side or starting the worker failed: "
                    + last_line(done.stderr)
                )
            return answer

        stack.state.worker_group = start.step(
            "registering the Prefect side (prefect-aci register: ACI pool, blocks, variable), "
            "flow code to Azurite, the demo deployment, and the ACI worker from the ARM "
            "template's worker resource",
            wire,
        )
        stack.save()

    def report(self, stack: Stack, running: dict[str, bool]) -> list[Report]:
        group = stack.state.worker_group
        if not group:
            return []
        worker = f"-{group}-{WORKER_CONTAINER}"
        up = any(is_up for name, is_up in running.items() if name.endswith(worker))
        return [("ACI worker", f"container group {group}", up)]


class DemoFlowRun(Part):
    """The demo deployment run once through the worker; its outcome is <state dir>/run.json."""

    def start(self, stack: Stack, start: Start) -> None:
        run = start.step(
            "running the demo flow through the ACI worker and waiting for it to finish",
            lambda: wiring.run(stack.state.api),
        )
        stack.state.flow_run_id = run.flow_run_id
        stack.save()
        (stack.root / "run.json").write_text(json.dumps(asdict(run), indent=2) + "\n")

    def stop(self, stack: Stack) -> None:
        (stack.root / "run.json").unlink(missing_ok=True)

    def report(self, stack: Stack, running: dict[str, bool]) -> list[Report]:
        page = stack.state.flow_run_page()
        return [("last demo flow run", page, True)] if page else []


PARTS: list[Part] = [
    Registry(),
    Network(),
    LocalAzure(),
    Azurite(),
    PrefectServer(),
    LocalAci(),
    Wiring(),
    DemoFlowRun(),
]
