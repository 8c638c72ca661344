"""Start, wire and stop the local stack. Everything it starts is written to build/demo/state.json,
so `down` (and the next `up`) can remove exactly that."""

import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path

import docker
from docker.errors import NotFound
from rich.console import Console

from image_builder.cli_support import Step
from image_builder.errors import UserError
from image_builder.local_registry import LocalRegistry, free_port, wait_for_port
from image_builder.probe import require_image
from image_builder.push import PushPlan, push_image
from image_builder.record import ImageRecord, write_record
from local_demo import azurite

WORK_POOL = "local-docker"
DEPLOYMENT = "key-vault-demo/local"
FLOW_CODE_CONTAINER = "flow-code"
STORAGE_BLOCK = "prefect-aci-flow-code"
DEMO_SECRET = "prefect-aci-demo-secret"  # noqa: S105 (the Secret block's name)


def server_container(root: Path) -> str:
    """One name per checkout: two checkouts on one machine must not remove each other's demo."""
    return f"prefect-aci-demo-{hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:10]}"


@dataclass
class State:
    pids: dict[str, int] = field(default_factory=dict)
    containers: list[str] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> "State":
        return cls(**json.loads(path.read_text())) if path.is_file() else cls()

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")


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
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
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


def up(
    client: docker.DockerClient, record: ImageRecord, root: Path, flows_dir: Path, console: Console
) -> dict:
    """Start the stack, wire it, run the demo flow once; return its final state and logs."""
    require_image(client, record.image_id)
    down(client, root, console)
    state = State()
    state_file = root / "state.json"
    step = Step(console)

    registry = LocalRegistry(root / "registry", port=free_port())
    state.ports["registry"] = registry.port

    def start_registry() -> None:
        binary = ["docker-registry", "serve", str(registry.root / "config.yml")]
        state.pids["registry"] = _spawn(binary, root / "logs" / "registry.log")
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
        )[0],
    )
    write_record(root / "image.json", pushed)

    blob_port = free_port()
    state.ports["azurite"] = blob_port

    def start_azurite() -> None:
        binary = azurite.install(root / "node")
        state.pids["azurite"] = _spawn(
            azurite.command(binary, blob_port, root / "azurite"), root / "logs" / "azurite.log"
        )
        state.save(state_file)
        wait_for_port(blob_port, timeout=60)

    step(f"starting Azurite (Blob storage) on 127.0.0.1:{blob_port}", start_azurite)

    api_port = free_port()
    state.ports["prefect"] = api_port
    api = f"http://127.0.0.1:{api_port}/api"

    def start_server() -> None:
        container = client.containers.run(
            pushed.reference,
            ["prefect", "server", "start", "--host", "0.0.0.0"],  # noqa: S104
            name=server_container(root),
            detach=True,
            environment={"PREFECT_SERVER_ANALYTICS_ENABLED": "false"},
            ports={"4200/tcp": ("127.0.0.1", api_port)},
        )
        state.containers.append(container.id)
        state.save(state_file)
        _wait_http(f"{api}/health", 180, "the Prefect server")

    step(f"starting a Prefect server from our image on {api}", start_server)

    env = {"PREFECT_API_URL": api, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    demo_script = [
        sys.executable,
        "-m",
        "local_demo",
        "wire",
        "--registry-reference",
        pushed.reference,
        "--azurite-port",
        str(blob_port),
        "--flows-dir",
        str(flows_dir),
    ]
    wired = step(
        "registering blocks, the Docker work pool, and the deployment (code in Azurite)",
        lambda: subprocess.run(
            demo_script, env={**os.environ, **env}, capture_output=True, text=True
        ),
    )
    if wired.returncode != 0:
        raise UserError(
            f"wiring the demo failed: {(wired.stderr.strip().splitlines() or [''])[-1]}"
        )

    def start_worker() -> None:
        state.pids["worker"] = _spawn(
            [
                sys.executable,
                "-m",
                "prefect",
                "worker",
                "start",
                "--pool",
                WORK_POOL,
                "--type",
                "docker",
            ],
            root / "logs" / "worker.log",
            env,
        )
        state.save(state_file)

    step("starting a Docker worker (the local analogue of ACI)", start_worker)
    run = step(
        "running the demo flow and waiting for it to finish",
        lambda: subprocess.run(
            [sys.executable, "-m", "local_demo", "run"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=900,
        ),
    )
    if run.returncode != 0:
        raise UserError(
            f"the demo run failed: {(run.stderr.strip().splitlines() or [''])[-1]}; "
            f"see {root / 'logs'}"
        )
    state.save(state_file)
    return json.loads(run.stdout)


def demo_secret_value() -> str:
    return secrets.token_urlsafe(18)
