"""What a local stack knows of itself: its id and names (from its state folder), the state file
that lists what it started, and the context its parts share while it starts.

Everything a stack makes is labelled with its id and listed in <state dir>/state.json, so that
`down` (and the next `up`) removes exactly that and `status` can say what runs where. Parts hand
each other files in the state folder (the image record, the local Azure, the ARM outputs), never
positional arguments or a child's last line of output.
"""

import hashlib
import json
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path

import docker
from rich.console import Console

from prefect_aci.core.console import Step
from prefect_aci.core.records import ImageRecord
from prefect_aci.local_aci.config import LABEL

# The key in State.ports of the proxy that takes clients on this machine to Azure's names at the
# stand-in (prefect_aci.local_aci.proxy).
AZURE_PROXY = "azure-proxy"
# In the state folder: the Prefect server's basic-auth string, `user:password` (Prefect's shape).
AUTH_STRING_FILE = "prefect-auth-string"


def stack_id(root: Path) -> str:
    """One id per state folder: two stacks on one machine must not remove each other's parts."""
    return hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:10]


def server_container(root: Path) -> str:
    return f"prefect-aci-demo-{stack_id(root)}"


def database_container(root: Path) -> str:
    return f"prefect-aci-db-{stack_id(root)}"


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
    prefix: str | None = None  # the network's /24 as its first three numbers: "172.29.8"
    worker_group: str | None = None
    flow_run_id: str | None = None
    # Ready members of the stack's ACI standby pool (`demo up --standby N`); 0: none.
    standby: int = 0
    standby_worker_group: str | None = None  # the standby work pool's worker, with a pool

    @classmethod
    def load(cls, path: Path) -> "State":
        return cls(**json.loads(path.read_text())) if path.is_file() else cls()

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @property
    def gateway(self) -> str:
        """This machine on the stack's network: where Azurite listens."""
        return f"{self.prefix}.1"

    @property
    def stand_in_address(self) -> str:
        return f"{self.prefix}.2"

    @property
    def server_address(self) -> str:
        """The Prefect server on the stack's network."""
        return f"{self.prefix}.3"

    @property
    def database_address(self) -> str:
        """The Prefect server's PostgreSQL on the stack's network (no port on this machine)."""
        return f"{self.prefix}.4"

    @property
    def network_api(self) -> str:
        """The Prefect API where both this machine and the stack's containers (the worker, flow
        runs) reach it: the server's address on the stack's network."""
        return f"http://{self.server_address}:4200/api"

    @property
    def ui(self) -> str:
        return f"http://127.0.0.1:{self.ports['prefect']}"

    @property
    def api(self) -> str:
        return f"{self.ui}/api"

    @property
    def local_aci(self) -> str:
        return f"https://127.0.0.1:{self.ports['local-aci']}"

    @property
    def azure_proxy(self) -> str | None:
        """The proxy to Azure's names (HTTPS_PROXY for a client on this machine), if started."""
        port = self.ports.get(AZURE_PROXY)
        return f"http://127.0.0.1:{port}" if port else None

    def flow_run_page(self) -> str | None:
        return f"{self.ui}/runs/flow-run/{self.flow_run_id}" if self.flow_run_id else None


@dataclass
class Stack:
    """One stack's state folder, its engine and its state, as its parts start, stop and report."""

    client: docker.DockerClient
    root: Path
    console: Console
    state: State = field(default_factory=State)

    @classmethod
    def load(cls, client: docker.DockerClient, root: Path, console: Console) -> "Stack":
        return cls(client, root, console, State.load(root / "state.json"))

    @property
    def id(self) -> str:
        return stack_id(self.root)

    @property
    def labels(self) -> dict[str, str]:
        return {f"{LABEL}.stack": self.id}

    @property
    def image_record(self) -> Path:
        """The image as pushed to the stack's registry: what groups and the worker run."""
        return self.root / "image.json"

    @property
    def azure_record(self) -> Path:
        """The ARM deployment's outputs, as `deploy-all` writes build/azure.json on Azure."""
        return self.root / "azure.json"

    @property
    def local_azure(self) -> Path:
        return self.root / "local-azure"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def auth_string_file(self) -> Path:
        """The Prefect server's basic-auth string (mode 0600), made when the server starts."""
        return self.root / AUTH_STRING_FILE

    def auth_string(self) -> str | None:
        """What a client of the stack's Prefect server sends (PREFECT_API_AUTH_STRING), if any."""
        path = self.auth_string_file
        return path.read_text().strip() if path.is_file() else None

    def api_settings(self, api: str | None = None) -> dict[str, str]:
        """The Prefect settings of a client of the stack's server: its API at ``api`` (default
        on 127.0.0.1) and the auth string when the server asks for one."""
        settings = {"PREFECT_API_URL": api or self.state.api}
        auth = self.auth_string()
        if auth:
            settings["PREFECT_API_AUTH_STRING"] = auth
        return settings

    def save(self) -> None:
        self.state.save(self.root / "state.json")

    def forget(self) -> None:
        (self.root / "state.json").unlink(missing_ok=True)

    def containers(self) -> list:
        """Every container labelled with this stack's id: its parts and its container groups."""
        labelled = {"label": [f"{LABEL}.stack={self.id}"]}
        return self.client.containers.list(all=True, filters=labelled)


@dataclass
class Start:
    """What `up` was asked for (the images and the Prefect port), and the database's password,
    which lives in memory only while `up` hands it to the containers that need it."""

    record: ImageRecord  # the image flow runs and the worker run
    server: ImageRecord  # its server variant, with the UI: the Prefect server and the stand-ins
    port: int | None
    step: Step
    standby: int = 0  # ready members of a standby pool; 0: none
    database_password: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
