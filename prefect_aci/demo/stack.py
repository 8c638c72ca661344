"""Start, wire and stop the local stack. Everything it starts is written to <state dir>/state.json,
so `down` (and the next `up`) removes exactly that, and `status` can say what runs where. Two
state folders (a user's demo and a test's) never touch each other's processes or containers."""

import hashlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path

import docker
from docker.errors import NotFound
from rich.console import Console

from image_builder.local_registry import LocalRegistry, free_port, wait_for_port
from image_builder.probe import require_image
from image_builder.push import PushPlan, push_image
from prefect_aci.core.console import Step
from prefect_aci.core.errors import UserError
from prefect_aci.core.paths import BUILD_DIR
from prefect_aci.core.records import ImageRecord, write_record
from prefect_aci.demo import azurite, wiring

# Prefect's usual port: the UI's address in Prefect's own docs, taken when it is free.
PREFERRED_PORT = 4200
# Azurite comes from npm once per checkout, whichever state folder the stack uses.
NODE_PREFIX = BUILD_DIR / "node"


def server_container(root: Path) -> str:
    """One name per state folder: two stacks on one machine must not remove each other's."""
    return f"prefect-aci-demo-{hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:10]}"


@dataclass
class State:
    pids: dict[str, int] = field(default_factory=dict)
    containers: list[str] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)
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

    def flow_run_page(self) -> str | None:
        return f"{self.ui}/runs/flow-run/{self.flow_run_id}" if self.flow_run_id else None


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
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


def _wait_http(url: str, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):  # noqa: S310 (loopback)
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


def down(client: docker.DockerClient, root: Path, console: Console) -> None:
    state = State.load(root / "state.json")
    for name, pid in state.pids.items():
        if _stop_group(pid):
            console.print(f"stopped {name} (pid {pid})")
    for container_id in [*state.containers, server_container(root)]:
        with suppress(NotFound):
            client.containers.get(container_id).remove(force=True)
            console.print(f"removed container {container_id[:20]}")
    (root / "state.json").unlink(missing_ok=True)


def status(client: docker.DockerClient, root: Path) -> list[tuple[str, str, bool]]:
    """(part, where, running) for each part the state file names; empty when none was started."""
    state = State.load(root / "state.json")
    if not state.ports:
        return []
    parts = []
    for name, pid in state.pids.items():
        where = f"127.0.0.1:{state.ports[name]}" if name in state.ports else ""
        parts.append((name, f"{where} (pid {pid})".strip(), _alive(pid)))
    try:
        running = client.containers.get(server_container(root)).status == "running"
    except NotFound:
        running = False
    parts.append(("prefect server", f"UI {state.ui}, API {state.api}", running))
    if state.flow_run_id:
        parts.append(("last demo flow run", state.flow_run_page() or "", running))
    return parts


def up(
    client: docker.DockerClient,
    record: ImageRecord,
    root: Path,
    flows_dir: Path,
    console: Console,
    port: int | None = None,
) -> tuple[State, wiring.DemoRun]:
    """Start the stack, wire it, run the demo flow once; return the state and the run."""
    require_image(client, record.image_id)
    down(client, root, console)
    state = State()
    state_file = root / "state.json"
    step = Step(console)

    registry = LocalRegistry(root / "registry", port=free_port())
    state.ports["registry"] = registry.port

    def start_registry() -> None:
        binary = registry.binary()
        state.pids["registry"] = _spawn(
            [binary, "serve", str(registry.root / "config.yml")], root / "logs" / "registry.log"
        )
        state.save(state_file)
        wait_for_port(registry.port)

    step(f"starting a local OCI registry on {registry.host}", start_registry)
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

    blob_port = free_port()
    state.ports["azurite"] = blob_port

    def start_azurite() -> None:
        binary = azurite.install(NODE_PREFIX)
        state.pids["azurite"] = _spawn(
            azurite.command(binary, blob_port, root / "azurite"), root / "logs" / "azurite.log"
        )
        state.save(state_file)
        wait_for_port(blob_port, timeout=60)

    step(f"starting Azurite (Blob storage) on 127.0.0.1:{blob_port}", start_azurite)

    state.ports["prefect"] = choose_port(port)

    def start_server() -> None:
        container = client.containers.run(
            pushed.reference,
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
        )
        state.containers.append(container.id)
        state.save(state_file)
        _wait_http(f"{state.api}/health", 180, "the Prefect server")

    step(f"starting a Prefect server from our image, UI on {state.ui}", start_server)
    step(
        "registering blocks, the Docker work pool, and the deployment (code in Azurite)",
        lambda: wiring.wire(state.api, pushed.reference, blob_port, flows_dir),
    )

    def start_worker() -> None:
        state.pids["worker"] = _spawn(
            wiring.WORKER_COMMAND, root / "logs" / "worker.log", wiring.server_env(state.api)
        )
        state.save(state_file)

    step("starting a Docker worker (the local analogue of ACI)", start_worker)
    run = step(
        "running the demo flow and waiting for it to finish",
        lambda: wiring.run(state.api),
    )
    state.flow_run_id = run.flow_run_id
    state.save(state_file)
    return state, run
