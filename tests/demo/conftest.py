"""One local stack for the tests of this folder, started the way `make demo` starts it
(`prefect-aci demo up`), in a state folder and on ports of the tests' own: a user's `make demo`
stack on the same machine is neither reused nor taken down.

What the tests reach, they reach as a user would: the Prefect API on 127.0.0.1, the local ACI's
own door on 127.0.0.1 (the deployer's identity endpoint, fault injection), the Container Instances
API through azure-mgmt-containerinstance, Blob storage through azure-storage-blob."""

import json
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.containerinstance import ContainerInstanceManagementClient
from azure.storage.blob import ContainerClient

from image_builder.local_registry import free_port
from prefect_aci.core.paths import PROJECT_ROOT
from prefect_aci.core.records import AzureRecord, read_record
from prefect_aci.demo.local_azure import DeployerCredential, LocalSide, load_side

TEST_FLOWS = Path(__file__).parent / "flows"


def demo(*args, state_dir: Path, timeout: int = 1200) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "prefect_aci", "demo", *args, "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=timeout,
    )


@dataclass
class Stack:
    up: subprocess.CompletedProcess
    state: dict
    folder: Path
    side: LocalSide

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.state['ports']['prefect']}/api"

    @property
    def ui(self) -> str:
        return f"http://127.0.0.1:{self.state['ports']['prefect']}"

    @property
    def local_aci(self) -> str:
        return f"https://127.0.0.1:{self.state['ports']['local-aci']}"

    @property
    def record(self) -> AzureRecord:
        return self.side.record

    def credential(self) -> DeployerCredential:
        return self.side.credential(self.local_aci)

    def tls_context(self) -> ssl.SSLContext:
        return self.side.tls.client_context()

    def aci(self) -> ContainerInstanceManagementClient:
        return self.side.aci(self.local_aci)

    def flow_code(self) -> ContainerClient:
        return ContainerClient(
            account_url=self.record.blob_endpoint,
            container_name=self.record.flow_code_container_name,
            credential=self.credential(),
            connection_verify=str(self.side.tls.bundle),
        )

    def inject_fault(self, method: str, path_contains: str, status: int, times: int) -> None:
        request = urllib.request.Request(  # noqa: S310 (https, loopback)
            f"{self.local_aci}/_local/faults",
            data=json.dumps(
                {"method": method, "path_contains": path_contains, "status": status, "times": times}
            ).encode(),
            headers={"X-IDENTITY-HEADER": self.side.deployer_secret},
            method="POST",
        )
        with urllib.request.urlopen(request, context=self.tls_context(), timeout=10):  # noqa: S310
            pass

    def group_gone(self, name: str, timeout: float = 120) -> bool:
        """The container group is deleted within ``timeout`` (the worker deletes a run's group
        once it has seen the run end, a poll or two after its final state)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.aci().container_groups.get(self.record.resource_group, name)
            except ResourceNotFoundError:
                return True
            time.sleep(2)
        return False

    def faults_left(self) -> int:
        request = urllib.request.Request(  # noqa: S310 (https, loopback)
            f"{self.local_aci}/_local/faults",
            headers={"X-IDENTITY-HEADER": self.side.deployer_secret},
        )
        with urllib.request.urlopen(request, context=self.tls_context(), timeout=10) as answer:  # noqa: S310
            return json.loads(answer.read())["faults"]

    def image(self) -> str:
        return read_record(self.folder / "image.json").reference or ""


@pytest.fixture(scope="package")
def stack(built_image, server_image, tmp_path_factory) -> Stack:
    folder = tmp_path_factory.mktemp("demo")
    record, server_record = folder / "image.json", folder / "server-image.json"
    record.write_text(built_image.model_dump_json())
    server_record.write_text(server_image.model_dump_json())
    state_dir = folder / "stack"
    up = demo(
        "up",
        "--no-build",
        "--record",
        str(record),
        "--server-record",
        str(server_record),
        "--port",
        str(free_port()),
        state_dir=state_dir,
    )
    state_file = state_dir / "state.json"
    assert state_file.is_file(), up.stderr[-3000:]
    yield Stack(
        up, json.loads(state_file.read_text()), state_dir, load_side(state_dir / "local-azure")
    )
    demo("down", state_dir=state_dir, timeout=300)
