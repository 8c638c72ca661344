"""The Prefect side of the local demo; runs with PREFECT_API_URL pointing at the demo server."""

import contextlib
import time
from pathlib import Path

from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient
from prefect import get_client
from prefect.blocks.system import Secret
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect_azure import AzureBlobStorageContainer, AzureBlobStorageCredentials
from prefect_docker.worker import DockerWorker

from flows.deployment import deploy_demo, upload_flow_code
from local_demo import azurite
from local_demo.stack import (
    DEMO_SECRET,
    DEPLOYMENT,
    FLOW_CODE_CONTAINER,
    STORAGE_BLOCK,
    WORK_POOL,
    demo_secret_value,
)


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


def wire(image_reference: str, azurite_port: int, flows_dir: Path) -> None:
    Secret(value=demo_secret_value()).save(DEMO_SECRET, overwrite=True)
    upload_to_azurite(flows_dir, azurite_port)
    storage = AzureBlobStorageContainer(
        container_name=FLOW_CODE_CONTAINER,
        credentials=AzureBlobStorageCredentials(
            connection_string=azurite.connection_string(azurite_port)
        ),
    )
    storage.save(STORAGE_BLOCK, overwrite=True)
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
    deploy_demo(STORAGE_BLOCK, WORK_POOL, DEPLOYMENT.split("/")[1])


def run() -> dict:
    flow_run = run_deployment(DEPLOYMENT, timeout=600)
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
    return {
        "flow_run_id": str(flow_run.id),
        "state": flow_run.state.type.value,
        "state_name": flow_run.state.name,
        "message": flow_run.state.message,
        "logs": messages,
    }
