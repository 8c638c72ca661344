"""The Prefect side of the local demo, against the demo's own server (never the user's profile)."""

import contextlib
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient
from prefect import get_client
from prefect.blocks.system import Secret
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect_azure import AzureBlobStorageContainer, AzureBlobStorageCredentials
from prefect_docker.worker import DockerWorker

from flows.deployment import deploy_demo, upload_flow_code
from prefect_aci.core.names import DEMO_SECRET, FLOW_CODE_BLOCK, FLOW_CODE_CONTAINER, FLOW_NAME
from prefect_aci.demo import azurite

WORK_POOL = "local-docker"
DEPLOYMENT = "local"
WORKER_COMMAND = [
    sys.executable,
    "-m",
    "prefect",
    "worker",
    "start",
    "--pool",
    WORK_POOL,
    "--type",
    "docker",
]


def server_env(api: str) -> dict[str, str]:
    """Environment of a process that talks to the demo server and nothing else."""
    return {"PREFECT_API_URL": api, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


@dataclass
class DemoRun:
    flow_run_id: str
    state: str
    state_name: str
    message: str | None
    logs: list[str] = field(default_factory=list)


def upload_to_azurite(flows_dir: Path, azurite_port: int) -> list[str]:
    service = BlobServiceClient.from_connection_string(azurite.connection_string(azurite_port))
    container = service.get_container_client(FLOW_CODE_CONTAINER)
    with contextlib.suppress(ResourceExistsError):
        container.create_container()
    return upload_flow_code(container, flows_dir)


def docker_pool_template(image_reference: str) -> dict:
    template = DockerWorker.get_default_base_job_template()
    properties = template["variables"]["properties"]
    # Host networking: the flow-run container reaches the server and Azurite on 127.0.0.1.
    # IfNotPresent: prefect-docker cannot parse a pull of a reference with both a registry port
    # and a digest (127.0.0.1:5000/prefect-aci@sha256:...); the engine holds those bytes already.
    defaults = {
        "image": image_reference,
        "network_mode": "host",
        "image_pull_policy": "IfNotPresent",
        "auto_remove": True,
    }
    for name, value in defaults.items():
        properties[name]["default"] = value
    return template


def wire(api: str, image_reference: str, azurite_port: int, flows_dir: Path) -> None:
    with temporary_settings(updates={PREFECT_API_URL: api}):
        Secret(value=secrets.token_urlsafe(18)).save(DEMO_SECRET, overwrite=True)
        upload_to_azurite(flows_dir, azurite_port)
        storage = AzureBlobStorageContainer(
            container_name=FLOW_CODE_CONTAINER,
            credentials=AzureBlobStorageCredentials(
                connection_string=azurite.connection_string(azurite_port)
            ),
        )
        storage.save(FLOW_CODE_BLOCK, overwrite=True)
        with get_client(sync_client=True) as client:
            with contextlib.suppress(ObjectNotFound):
                client.delete_work_pool(WORK_POOL)
            client.create_work_pool(
                WorkPoolCreate(
                    name=WORK_POOL,
                    type="docker",
                    base_job_template=docker_pool_template(image_reference),
                )
            )
        deploy_demo(FLOW_CODE_BLOCK, WORK_POOL, DEPLOYMENT)


def run(api: str) -> DemoRun:
    """Run the demo deployment, wait for its end, and read its logs back from the API."""
    with temporary_settings(updates={PREFECT_API_URL: api}):
        flow_run = run_deployment(f"{FLOW_NAME}/{DEPLOYMENT}", timeout=600)
        # The last log lines may reach the API just after the final state.
        deadline = time.monotonic() + 30
        with get_client(sync_client=True) as client:
            while True:
                logs = client.read_logs(
                    log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id]))
                )
                messages = [log.message for log in logs]
                if any(m.startswith("Finished in state") for m in messages) or (
                    time.monotonic() > deadline
                ):
                    break
                time.sleep(1)
    return DemoRun(
        flow_run_id=str(flow_run.id),
        state=flow_run.state.type.value,
        state_name=flow_run.state.name,
        message=flow_run.state.message,
        logs=messages,
    )
