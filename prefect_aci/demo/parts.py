"""The parts of a local stack, in the order `up` starts them (`down` stops them the other way):

- Debian's docker-registry on 127.0.0.1 (ACR): the image is pushed there, groups pull it by digest;
- a Docker network (the delegated subnet) for everything below;
- the local Azure before anything is deployed: a subscription, an empty resource group, its
  owner (the deployer), Azurite as its Blob storage, TLS for Azure's host names;
- Azurite on 127.0.0.1, HTTPS with OAuth and the stack's own account key (Blob storage for flow
  code), and its door on the host's address on that network, for the stack's containers and this
  user's processes only (prefect_aci.demo.gate);
- PostgreSQL from Debian for the Prefect server (prefect_aci.demo.database), on the network
  alone, open to the server only;
- a Prefect server from our image, UI included, published on 127.0.0.1 (Prefect Cloud), and at
  its address on the network for the worker and flow runs;
- local ACI, in a container of our image (Resource Manager, Container Instances, Key Vault, IMDS;
  prefect_aci.local_aci), reached at Azure's own host names, with the IMDS router at
  169.254.169.254 that all stacks on this machine share;
- `prefect-aci deploy-all`, unchanged, as the deployer: arm/azuredeploy.json through local
  Resource Manager (identities, roles, Key Vault and its secrets, storage, the worker's container
  group, which then runs), register, the flow code, the demo deployment;
- the demo flow run, through that worker.

Each part reserves its ports before any part starts (`plan`), then starts, printing its steps;
it stops what it started and reports whether it runs.
"""

import json
import os
import re
import secrets
import subprocess
import sys
from contextlib import suppress
from dataclasses import asdict

import docker
from azure.mgmt.containerinstance import ContainerInstanceManagementClient
from docker.errors import APIError, NotFound
from rich.console import Console

from arm.deploy import STANDBY_WORKER_CONTAINER, WORKER_CONTAINER
from image_builder.local_registry import LocalRegistry, free_port, wait_for_port
from image_builder.push import PushPlan, push_image
from prefect_aci.core.engine import make_network
from prefect_aci.core.errors import UserError, last_line
from prefect_aci.core.names import DEMO_STANDBY_DEPLOYMENT, FLOW_NAME
from prefect_aci.core.paths import BUILD_DIR, PROJECT_ROOT
from prefect_aci.core.records import AzureRecord, read_record, write_record
from prefect_aci.demo import azurite, database, flow_run
from prefect_aci.demo.local_azure import (
    DEMO_SECRET_FILE,
    LocalSide,
    load_side,
    make_local_side,
)
from prefect_aci.demo.processes import alive, port_is_free, spawn, stop, wait_http
from prefect_aci.demo.state import (
    AUTH_STRING_FILE,
    AZURE_PROXY,
    Stack,
    Start,
    database_container,
    network_name,
    server_container,
    stand_in_container,
)
from prefect_aci.demo.warm import WarmWatch, wait_for_refill
from prefect_aci.local_aci import imds_router, server
from prefect_aci.local_aci.config import LABEL
from prefect_aci.local_aci.storage import AZURITE_ACCOUNT

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
# How long deploy-all may take on the local Azure (the worker's group starts within it).
DEPLOY_ALL_TIMEOUT_SECONDS = 900
# deploy-all's step lines and registration's report, which `up` repeats (not Prefect's output).
STEP_LINE = re.compile(r"^(> |  done in |  (created|updated|unchanged) )")
# The basic-auth user; the password is random per stack.
AUTH_USER = "prefect-aci"


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
    """The local Azure before anything is deployed (a subscription, an empty resource group,
    the deployer who owns it, Azurite as its Blob storage), which local ACI and Azurite read."""

    def start(self, stack: Stack, start: Start) -> None:
        state = stack.state
        make_local_side(
            stack.local_azure,
            stack.id,
            state.network,
            state.stand_in_address,
            blob_endpoint=(
                f"https://{state.gateway}:{state.ports[AzuriteGate.name]}/{AZURITE_ACCOUNT}"
            ),
            addresses=(state.gateway, state.stand_in_address),
        )


class Azurite(Process):
    """Azurite on 127.0.0.1 only; the stack's containers reach it through AzuriteGate."""

    name = "azurite"

    def plan(self, stack: Stack, start: Start) -> None:
        stack.state.ports[self.name] = free_port()

    def start(self, stack: Stack, start: Start) -> None:
        state = stack.state
        port = state.ports[self.name]
        side = load_side(stack.local_azure)
        tls = side.tls

        def serve() -> None:
            binary = azurite.install(NODE_PREFIX)
            state.pids[self.name] = spawn(
                azurite.command(binary, port, stack.root / "azurite", (tls.certificate, tls.key)),
                stack.logs / "azurite.log",
                env=azurite.accounts_env(side.config.blob_account_key or azurite.ACCOUNT_KEY),
            )
            stack.save()
            wait_for_port(port, timeout=60)

        start.step(f"starting Azurite (Blob storage, OAuth) on 127.0.0.1:{port}", serve)


class AzuriteGate(Process):
    """Azurite's door on the host's address on the stack's network (prefect_aci.demo.gate): for
    the stack's containers and this user's processes, not for other networks or users."""

    name = "azurite-gate"

    def plan(self, stack: Stack, start: Start) -> None:
        stack.state.ports[self.name] = free_port()

    def start(self, stack: Stack, start: Start) -> None:
        state = stack.state
        gateway, port = state.gateway, state.ports[self.name]
        state.addresses[self.name] = gateway
        command = [
            sys.executable,
            "-m",
            "prefect_aci.demo.gate",
            gateway,
            str(port),
            str(state.ports[Azurite.name]),
            f"{state.prefix}.0/24",
        ]

        def serve() -> None:
            state.pids[self.name] = spawn(command, stack.logs / "azurite-gate.log")
            stack.save()
            wait_for_port(port, timeout=30, address=gateway)

        start.step(
            f"opening Azurite to the stack's network (and this user only) on {gateway}:{port}",
            serve,
        )


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


def _start_with_secret(stack: Stack, container, image: str, path: str, content: str) -> None:
    """List the created ``container`` in the state, put ``content`` in it at ``path`` for the
    user its ``image`` runs as (prefect_aci.demo.database), then start it."""
    stack.state.containers.append(container.id)
    stack.save()
    database.give_secret(container, path, content, database.container_uid(stack.client, image))
    container.start()


class Database(Part):
    """PostgreSQL for the Prefect server, at its own address on the stack's network."""

    name = "database"

    def start(self, stack: Stack, start: Start) -> None:
        state = stack.state
        image = start.step(
            "building the database image (PostgreSQL from Debian, on the images' base)",
            lambda: database.build_image(
                stack.client, start.server.base_image, Console(quiet=True)
            ),
        )

        def serve() -> None:
            container = stack.client.containers.create(
                image,
                name=database_container(stack.root),
                detach=True,
                environment={"PREFECT_SERVER_ADDRESS": state.server_address},
                network=state.network,
                networking_config=_endpoint(
                    stack.client, state.network, ipv4_address=state.database_address
                ),
                labels=stack.labels,
            )
            _start_with_secret(
                stack, container, image, database.SECRET_FILE, start.database_password
            )
            database.wait_ready(container)

        start.step(
            f"starting the Prefect server's PostgreSQL on {state.database_address} (the stack's "
            "network only)",
            serve,
        )

    def stop(self, stack: Stack) -> None:
        for container in _container(stack, database_container(stack.root)):
            _remove(stack, container)

    def report(self, stack: Stack, running: dict[str, bool]) -> list[Report]:
        if not stack.state.prefix:
            return []
        where = f"PostgreSQL {stack.state.database_address}:{database.PORT}, stack network only"
        return [("database", where, running.get(database_container(stack.root), False))]


class PrefectServer(Part):
    name = "prefect"

    def plan(self, stack: Stack, start: Start) -> None:
        stack.state.ports[self.name] = choose_port(start.port)

    def start(self, stack: Stack, start: Start) -> None:
        state = stack.state
        write_auth_string(stack)

        def serve() -> None:
            container = stack.client.containers.create(
                start.server.image_id,
                ["prefect", "server", "start", "--host", "0.0.0.0"],  # noqa: S104 (in the container)
                name=server_container(stack.root),
                detach=True,
                environment={
                    **server_environment(stack),
                    **database.server_settings(state.database_address),
                },
                ports={"4200/tcp": ("127.0.0.1", state.ports[self.name])},
                network=state.network,
                networking_config=_endpoint(
                    stack.client,
                    state.network,
                    ipv4_address=state.server_address,
                ),
                labels=stack.labels,
            )
            _start_with_secret(
                stack,
                container,
                start.server.image_id,
                database.PGPASS_FILE,
                database.pgpass(state.database_address, start.database_password),
            )
            wait_http(f"{state.api}/health", 180, "the Prefect server")

        start.step(f"starting a Prefect server from our image, UI on {state.ui}", serve)

    def stop(self, stack: Stack) -> None:
        for container in _container(stack, server_container(stack.root)):
            _remove(stack, container)
        stack.auth_string_file.unlink(missing_ok=True)

    def report(self, stack: Stack, running: dict[str, bool]) -> list[Report]:
        where = f"UI {stack.state.ui}, API {stack.state.api}"
        return [("prefect server", where, running.get(server_container(stack.root), False))]


def write_auth_string(stack: Stack) -> str:
    """A new random basic-auth string for the stack's server, in its 0600 file."""
    auth = f"{AUTH_USER}:{secrets.token_urlsafe(24)}"
    path = stack.auth_string_file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    path.touch(mode=0o600)
    path.write_text(auth + "\n")
    return auth


def server_environment(stack: Stack) -> dict[str, str]:
    """The Prefect server's settings (Prefect 3.9's names): not open to every web page (Prefect
    allows any origin by default and checks no CSRF token) nor to every local
    user (its API on 127.0.0.1 asks no credential by default)."""
    ui = stack.state.ui
    env = {
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # The UI runs in the user's browser and calls the API named by /ui-settings, which by
        # default is 127.0.0.1:4200 whatever port was published. A path relative to the page
        # follows the port the browser used (also through an SSH tunnel); PREFECT_UI_URL makes
        # the links Prefect prints point at the UI.
        "PREFECT_UI_API_URL": "/api",
        "PREFECT_UI_URL": ui,
        # The UI calls its own origin; no other page may read the API's answers.
        "PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS": ui,
        # State-changing calls carry a token from /csrf-token, which Prefect's client and UI
        # fetch (PREFECT_CLIENT_CSRF_SUPPORT_ENABLED is on by default); a form posted by another
        # page has none.
        "PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED": "true",
    }
    auth = stack.auth_string()
    if auth:
        env["PREFECT_SERVER_API_AUTH_STRING"] = auth
    return env


def _config_maps_mount(folder: str | None) -> dict:
    """The config maps folder at its own path (none for a stack made before it existed)."""
    return {folder: {"bind": folder, "mode": "rw"}} if folder else {}


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
    protocol = {f"{LABEL}.role": "imds-router", f"{LABEL}.protocol": imds_router.PROTOCOL}
    with suppress(NotFound):
        router = client.containers.get(imds_router.ROUTER_NAME)
        if router.status == "running" and router.labels.items() >= protocol.items():
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
        labels=protocol,
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
        stack.state.ports[AZURE_PROXY] = free_port()

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
                environment={
                    "PYTHONPATH": SOURCE_IN_CONTAINER,
                    # Where the IMDS router, which holds the Docker socket, reads it.
                    imds_router.ROUTER_SECRET_ENV: side.router_secret(),
                },
                volumes={
                    **_source_mounts(),
                    str(side.folder.resolve()): {"bind": STAND_IN_FOLDER, "mode": "ro"},
                    DOCKER_SOCKET: {"bind": DOCKER_SOCKET, "mode": "rw"},
                    # The groups' config maps, written by the stand-in and bind-mounted by the
                    # engine into the groups' containers: the same path on both sides.
                    **_config_maps_mount(side.config.wiring.config_maps_folder),
                },
                # The stand-in reads its keys (mode 0600) as the user who made them, and drives
                # the Docker engine through its socket's group.
                user=f"{os.getuid()}:{os.getgid()}",
                group_add=_socket_group(),
                # Azure's endpoints listen on 443 and 80, below 1024.
                sysctls={"net.ipv4.ip_unprivileged_port_start": "0"},
                ports={
                    "443/tcp": ("127.0.0.1", state.ports[self.name]),
                    # Azure's names for clients on this machine (the Azure CLI's Key Vault).
                    f"{server.PROXY_PORT}/tcp": ("127.0.0.1", state.ports[AZURE_PROXY]),
                },
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
        """The stand-in and every container group it ran (the worker's, flow runs' left over,
        standby pool members): every container of the stack but the Prefect server and its
        database, which their parts stop after. The stand-in goes first: its standby pool
        controller would otherwise start new members while the others are being removed."""
        others = {server_container(stack.root), database_container(stack.root)}
        stand_in = stand_in_container(stack.root)
        containers = stack.containers()
        for container in sorted(containers, key=lambda c: c.name != stand_in):
            if container.name not in others:
                _remove(stack, container)
        imds_router_down(stack)

    def report(self, stack: Stack, running: dict[str, bool]) -> list[Report]:
        if self.name not in stack.state.ports:
            return []
        where = f"{stack.state.local_aci} (Resource Manager, Container Instances, Key Vault, IMDS)"
        up = running.get(stand_in_container(stack.root), False)
        reports = [("local ACI", where, up)]
        if stack.state.azure_proxy:
            reports.append(
                ("Azure names proxy", f"{stack.state.azure_proxy} (prefect-aci demo az)", up)
            )
        return reports


def local_azure_settings(stack: Stack, side: LocalSide) -> dict[str, str]:
    """The settings `prefect-aci deploy-all` reads, for the local Azure: its subscription and
    resource group, Resource Manager's address, the deployer's sign-in (DefaultAzureCredential,
    App Service managed identity protocol) and certificate, the stack's Prefect server at an
    address both this machine and the containers reach (with its auth string when it asks for
    one), the image from the stack's registry."""
    config = side.config
    return {
        **side.deployer_env(stack.state.local_aci),
        "AZURE_SUBSCRIPTION_ID": config.subscription_id,
        "AZURE_RESOURCE_GROUP": config.resource_group,
        "AZURE_LOCATION": config.location,
        "PREFECT_ACI_ARM_ENDPOINT": stack.state.local_aci,
        **stack.api_settings(stack.state.network_api),
        # The stack's server is on its own network, not behind TLS: only the stack's containers
        # and this machine reach it there.
        "PREFECT_ACI_ALLOW_HTTP_API_URL": "true",
        # The image is in the stack's registry already (ACR is not served locally).
        "PREFECT_ACI_DEPLOY_REGISTRY": "false",
        "PREFECT_ACI_DEMO_SECRET_VALUE": side.demo_secret(),
        # Who the local Azure's Standby Pool Resource Provider is, as `az ad sp list` tells it
        # on Azure: the template's standby pool (PREFECT_ACI_STANDBY_POOL_SIZE) needs it.
        "PREFECT_ACI_STANDBY_POOL_PROVIDER_PRINCIPAL_ID": config.standby_pool_provider_principal_id,
        "PREFECT_ACI_STANDBY_POOL_SIZE": str(stack.state.standby),
        **demo_sweep(),
    }


# How often the demo's pool sweeps itself (the scheduled sweep deployment), unless
# PREFECT_ACI_DEMO_SWEEP_EVERY says otherwise ("off": no sweep deployment).
DEMO_SWEEP_EVERY = "15m"


def demo_sweep() -> dict[str, str]:
    every = os.environ.get("PREFECT_ACI_DEMO_SWEEP_EVERY", DEMO_SWEEP_EVERY).strip()
    return {} if every.lower() == "off" else {"PREFECT_ACI_SWEEP_EVERY": every}


# The settings above whose values are secrets, and the file in the state folder holding each.
SECRET_SETTINGS = {
    "IDENTITY_HEADER": f"local-azure/stand-in/{server.DEPLOYER_SECRET}",
    "PREFECT_ACI_DEMO_SECRET_VALUE": f"local-azure/stand-in/{DEMO_SECRET_FILE}",
    "PREFECT_API_AUTH_STRING": AUTH_STRING_FILE,
}


def deploy_env(stack: Stack, side: LocalSide) -> dict[str, str]:
    """This process's environment with the local Azure's settings: this machine's own Azure
    sign-in and product settings must not reach the local Azure."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AZURE_", "PREFECT_ACI_"))
        and k not in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_API_AUTH_STRING")
    }
    return {**env, **local_azure_settings(stack, side)}


def deploy_all_command(stack: Stack) -> list[str]:
    return [
        sys.executable,
        "-m",
        "prefect_aci",
        "deploy-all",
        "--no-build",
        "--image-record",
        str(stack.image_record),
        "--azure-record",
        str(stack.azure_record),
    ]


class DeployAll(Part):
    """`prefect-aci deploy-all`, unchanged, signed in to the local Azure as its deployer: the
    ARM template (network, identities, roles, Key Vault and its secrets, storage, the worker's
    container group), `register`, the flow code to Blob storage, the demo deployment. It runs in
    a child process whose environment is the local Azure's (aiohttp reads the CA bundle setting
    when it is imported); its ARM outputs are <state dir>/azure.json, as build/azure.json is on
    Azure, and its output is in <state dir>/logs/deploy-all.log."""

    def start(self, stack: Stack, start: Start) -> None:
        side = load_side(stack.local_azure)
        log = stack.logs / "deploy-all.log"

        def deploy() -> str:
            log.parent.mkdir(parents=True, exist_ok=True)
            done = subprocess.run(
                deploy_all_command(stack),
                env=deploy_env(stack, side),
                cwd=stack.root,  # no .env of the user's checkout
                capture_output=True,
                text=True,
                timeout=DEPLOY_ALL_TIMEOUT_SECONDS,
            )
            log.write_text(done.stdout + done.stderr)
            for line in done.stderr.splitlines():
                if STEP_LINE.match(line):
                    stack.console.print(f"  {line}", highlight=False, markup=False)
            if done.returncode != 0:
                raise UserError(
                    "prefect-aci deploy-all on the local Azure failed: "
                    f"{last_line(done.stderr or done.stdout)} (all of its output: {log})"
                )
            aci = side.aci(stack.state.local_aci)
            if stack.state.standby:
                stack.state.standby_worker_group = worker_group(
                    aci, side.config.resource_group, STANDBY_WORKER_CONTAINER
                )
            return worker_group(aci, side.config.resource_group)

        stack.state.worker_group = start.step(
            "prefect-aci deploy-all on the local Azure: the ARM template through local Resource "
            "Manager (identities, roles, Key Vault, storage, the worker in ACI), register, flow "
            "code to Blob storage, the demo deployment",
            deploy,
        )
        stack.save()

    def report(self, stack: Stack, running: dict[str, bool]) -> list[Report]:
        reports = []
        workers = (
            ("ACI worker", stack.state.worker_group, WORKER_CONTAINER),
            (
                "ACI standby pool's worker",
                stack.state.standby_worker_group,
                STANDBY_WORKER_CONTAINER,
            ),
        )
        for what, group, container in workers:
            if group:
                suffix = f"-{group}-{container}"
                up = any(is_up for name, is_up in running.items() if name.endswith(suffix))
                reports.append((what, f"container group {group}", up))
        return reports


def worker_group(
    aci: ContainerInstanceManagementClient, resource_group: str, container: str = WORKER_CONTAINER
) -> str:
    """The container group the template deployed for the worker (its container's name)."""
    for group in aci.container_groups.list_by_resource_group(resource_group):
        full = aci.container_groups.get(resource_group, group.name)
        if any(c.name == container for c in full.containers or []):
            return group.name
    raise UserError(f"deploy-all on the local Azure deployed no {container} container group")


class DemoFlowRun(Part):
    """The demo deployment run once through the worker; its outcome is <state dir>/run.json."""

    def start(self, stack: Stack, start: Start) -> None:
        if stack.state.standby:
            run = start.step(
                "running the demo flow through the standby pool's worker (a warm start), "
                "waiting for it to finish and for the pool to be back to its size",
                lambda: warm_run(stack),
            )
        else:
            run = start.step(
                "running the demo flow through the ACI worker and waiting for it to finish",
                lambda: flow_run.run(stack.state.api, auth_string=stack.auth_string()),
            )
        stack.state.flow_run_id = run.flow_run_id
        stack.save()
        (stack.root / "run.json").write_text(json.dumps(asdict(run), indent=2) + "\n")

    def stop(self, stack: Stack) -> None:
        (stack.root / "run.json").unlink(missing_ok=True)

    def report(self, stack: Stack, running: dict[str, bool]) -> list[Report]:
        page = stack.state.flow_run_page()
        return [("last demo flow run", page, True)] if page else []


def warm_run(stack: Stack) -> flow_run.DemoRun:
    """The demo deployment on the standby work pool, run once: whether its group was claimed
    from the standby pool (its GET says so while it runs), then the pool's ready members once it
    has refilled."""
    side = load_side(stack.local_azure)
    azure = read_record(stack.azure_record, AzureRecord)
    resources = side.resources(stack.state.local_aci)
    watch = WarmWatch(resources, side.config.resource_group_id, FLOW_NAME)
    run = flow_run.run(
        stack.state.api,
        auth_string=stack.auth_string(),
        deployment=DEMO_STANDBY_DEPLOYMENT,
        observe=watch,
    )
    run.warm = watch.warm
    run.ready_after = wait_for_refill(resources, azure.standby_pool_id)
    return run


PARTS: list[Part] = [
    Registry(),
    Network(),
    LocalAzure(),
    Azurite(),
    AzuriteGate(),
    Database(),
    PrefectServer(),
    LocalAci(),
    DeployAll(),
    DemoFlowRun(),
]
