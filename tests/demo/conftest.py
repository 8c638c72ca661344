"""One local stack for the tests of this folder, started the way `make demo` starts it
(`prefect-aci demo up`), in a state folder and on ports of the tests' own: a user's `make demo`
stack on the same machine is neither reused nor taken down.

What the tests reach, they reach as a user would: the Prefect API on 127.0.0.1, the local ACI's
own door on 127.0.0.1 (the deployer's identity endpoint, fault injection), the Container Instances
API through azure-mgmt-containerinstance, Blob storage through azure-storage-blob.

The stack's fixture takes it down with `prefect-aci demo down` once the folder's tests are done,
and checks there that `down` removed what `up` started and nothing else: whichever tests ran, in
whatever order, that check runs last."""

import json
import os
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.containerinstance import ContainerInstanceManagementClient
from azure.storage.blob import ContainerClient
from docker.errors import NotFound

from image_builder.local_registry import free_port
from prefect_aci.core.paths import PROJECT_ROOT
from prefect_aci.core.records import AzureRecord, PublishedImage, read_record
from prefect_aci.demo.flow_run import api_settings
from prefect_aci.demo.local_azure import DeployerCredential, LocalSide, load_side
from prefect_aci.demo.stack import (
    State,
    auth_string_file,
    network_name,
    server_container,
    stack_id,
)
from prefect_aci.local_aci.config import LABEL

TEST_FLOWS = Path(__file__).parent / "flows"


def demo(*args, state_dir: Path, timeout: int = 1200) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "prefect_aci", "demo", *args, "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=timeout,
    )


# The stack's ACI standby pool: one member ready (tests/demo/test_warm_starts.py); the other
# tests use the plain pool.
STANDBY = 1
SWEEP_SETTING = "PREFECT_ACI_DEMO_SWEEP_EVERY"
SESSION_SWEEP_EVERY = "1w"


@dataclass
class Stack:
    up: subprocess.CompletedProcess
    state: State  # as `up` left it in <folder>/state.json
    folder: Path
    side: LocalSide

    @property
    def api(self) -> str:
        return self.state.api

    @property
    def ui(self) -> str:
        return self.state.ui

    def auth_string(self) -> str | None:
        """The server's basic-auth string, when it asks for one (prefect_aci.demo.parts)."""
        path = auth_string_file(self.folder)
        return path.read_text().strip() if path.is_file() else None

    @property
    def api_settings(self) -> dict:
        """Prefect's client settings for the stack's server, as temporary_settings takes them."""
        return api_settings(self.api, self.auth_string())

    @property
    def api_env(self) -> dict[str, str]:
        """The same, as a child process's environment."""
        return {setting.name: value for setting, value in self.api_settings.items()}

    @property
    def local_aci(self) -> str:
        return self.state.local_aci

    @property
    def record(self) -> AzureRecord:
        """The ARM outputs `deploy-all` wrote, as it writes build/azure.json on Azure."""
        return read_record(self.folder / "azure.json", AzureRecord)

    def demo_secret(self) -> str:
        return self.side.demo_secret()

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

    def inject_fault(
        self, method: str, path_contains: str, status: int, times: int, **more: object
    ) -> None:
        """Azure's error for the next ``times`` matching requests (``more``: code, message,
        retry_after; LocalAci.add_fault)."""
        fault = {"method": method, "path_contains": path_contains, "status": status}
        request = urllib.request.Request(  # noqa: S310 (https, loopback)
            f"{self.local_aci}/_local/faults",
            data=json.dumps({**fault, "times": times, **more}).encode(),
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

    def settings(self, **changes: float) -> dict:
        """Local ACI's run-time settings, changed by ``changes`` (through the stack's door)."""
        request = urllib.request.Request(  # noqa: S310 (https, loopback)
            f"{self.local_aci}/_local/settings",
            data=json.dumps(changes).encode() if changes else None,
            headers={"X-IDENTITY-HEADER": self.side.deployer_secret},
            method="POST" if changes else "GET",
        )
        with urllib.request.urlopen(request, context=self.tls_context(), timeout=10) as answer:  # noqa: S310
            return json.loads(answer.read())

    @contextmanager
    def changed(self, **changes: float) -> Iterator[None]:
        """Local ACI's settings changed for the time of a with block, then put back."""
        before = self.settings()
        self.settings(**changes)
        try:
            yield
        finally:
            self.settings(**{key: before[key] for key in changes})

    def image(self) -> str:
        return read_record(self.folder / "image.json", PublishedImage).reference


def gone(pid: int) -> bool:
    """Ended, or a zombie waiting for init: `up` spawned it and has exited since."""
    for _ in range(50):
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.1)
    return False


def assert_down_removes_what_up_started_and_nothing_else(
    stack: Stack, client: docker.DockerClient, image_id: str
) -> None:
    """`prefect-aci demo down` on the stack: its processes, containers, network and state file
    go; a container of another stack, as a user's `make demo` would have, stays running."""
    other = client.containers.run(
        image_id,
        ["sleep", "600"],
        detach=True,
        labels={f"{LABEL}.stack": "another-stack"},
        network_mode="none",
    )
    try:
        down = demo("down", state_dir=stack.folder, timeout=300)
        assert down.returncode == 0, down.stderr
        with pytest.raises(NotFound):
            client.containers.get(server_container(stack.folder))
        assert not client.containers.list(
            all=True, filters={"label": f"{LABEL}.stack={stack_id(stack.folder)}"}
        ), "demo down left containers of its stack"
        with pytest.raises(NotFound):
            client.networks.get(network_name(stack.folder))
        assert not (stack.folder / "state.json").exists()
        assert [pid for pid in stack.state.pids.values() if not gone(pid)] == []
        other.reload()
        assert other.status == "running", "demo down stopped another stack's container"
        status = demo("status", state_dir=stack.folder, timeout=120)
        assert status.returncode == 0 and "No demo stack was started" in status.stderr
    finally:
        other.remove(force=True)


@pytest.fixture(scope="package")
def stack(built_image, server_image, docker_client, tmp_path_factory) -> Iterator[Stack]:
    """The stack `demo up` started. Its teardown is `demo down`, checked: an error at the
    teardown of this folder's last test says what `down` left behind or took that was not its."""
    folder = tmp_path_factory.mktemp("demo")
    # The sweep deployment is made, its first run a week away: the tests start it when they want
    # it, never in the middle of another test's fault. Every `demo` command and deploy-all of the
    # session (test_demo runs it again) keeps that schedule.
    before = os.environ.get(SWEEP_SETTING)
    os.environ[SWEEP_SETTING] = SESSION_SWEEP_EVERY
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
        "--standby",
        str(STANDBY),
        state_dir=state_dir,
    )
    state_file = state_dir / "state.json"
    if not state_file.is_file():
        # Whatever `up` started before it failed must not outlive the session.
        demo("down", state_dir=state_dir, timeout=300)
        pytest.fail(f"demo up wrote no {state_file}: {up.stderr[-3000:]}")
    stack = Stack(up, State.load(state_file), state_dir, load_side(state_dir / "local-azure"))
    yield stack
    try:
        assert_down_removes_what_up_started_and_nothing_else(
            stack, docker_client, built_image.image_id
        )
    except BaseException:
        # The check failed part way: leave nothing of the stack on the shared engine.
        demo("down", state_dir=state_dir, timeout=300)
        raise
    finally:
        if before is None:
            os.environ.pop(SWEEP_SETTING, None)
        else:
            os.environ[SWEEP_SETTING] = before
