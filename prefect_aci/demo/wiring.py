"""The Prefect side of the local stack, done by the same code as on Azure: `prefect-aci register`
from the local Azure record, the flow code uploaded to Blob storage as the deployer, the demo
deployment, and the worker started from the ARM template's own worker resource.

`wire` and `start_worker` run in a child process (`python -m prefect_aci.demo.wiring STATE_DIR`)
whose environment signs it in to the local Azure as the deployer and trusts the local CA: aiohttp,
which Prefect's blob storage and azure-identity's async credentials use, reads the CA bundle
setting once, when it is imported. Parent and child hand over through files in the state folder:
the stack's parts wrote the local Azure and the image record; the parent writes the request
(wiring.json), the child the worker group it started (worker.json).
"""

import contextlib
import json
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from azure.core.exceptions import ResourceExistsError
from azure.identity import DefaultAzureCredential
from azure.mgmt.containerinstance import ContainerInstanceManagementClient
from azure.mgmt.containerinstance.models import ContainerGroup
from azure.storage.blob import ContainerClient
from prefect import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

from arm.deploy import TEMPLATE, load_template
from blocks.inputs import RegistrationSettings
from blocks.register import register
from flows.deployment import deploy_demo, upload_flow_code
from prefect_aci.core.errors import UserError
from prefect_aci.core.names import FLOW_CODE_BLOCK, FLOW_NAME
from prefect_aci.core.records import AzureRecord, PublishedImage, read_record
from prefect_aci.demo.local_azure import LocalSide, load_side
from prefect_aci.local_aci.expressions import Scope, evaluate
from prefect_aci.local_aci.resource_manager import without_nulls

DEPLOYMENT = "local"
# Where containers on the stack's network reach the Prefect server.
SERVER_ALIAS = "prefect-server"
# The local server takes no API key; the template's worker wants one as a secure value.
LOCAL_API_KEY = "local-server-takes-no-key"
# Registration's report lines among what the child prints (not Prefect's deployment table).
REPORT_LINE = re.compile(r"^  (created|updated|unchanged|would-\w+) ")
REQUEST = "wiring.json"
ANSWER = "worker.json"


@dataclass
class Request:
    api: str  # the Prefect API, from this machine
    local_aci: str  # local ACI's door on 127.0.0.1
    flows_dir: str  # the demo flow's code, uploaded to Blob storage


def write_request(root: Path, request: Request) -> None:
    (root / ANSWER).unlink(missing_ok=True)
    (root / REQUEST).write_text(json.dumps(asdict(request), indent=2) + "\n")


def read_answer(root: Path) -> str | None:
    """The worker group the child started, or None when it did not get that far."""
    answer = root / ANSWER
    return json.loads(answer.read_text())["worker_group"] if answer.is_file() else None


@dataclass
class DemoRun:
    flow_run_id: str
    state: str
    state_name: str
    message: str | None
    logs: list[str] = field(default_factory=list)


def wire(api: str, image: PublishedImage, record: AzureRecord, flows_dir: Path) -> None:
    """Register the Prefect side from the local record, upload the flow code, deploy the flow."""
    # The pool the local ARM outputs name; the worker uses its managed identity, never a service
    # principal of this machine's environment.
    settings = RegistrationSettings(work_pool_name=None).with_managed_identity()
    with temporary_settings(updates={PREFECT_API_URL: api}):
        register(record, image, settings, echo=lambda line: print(f"  {line}", flush=True))
        container = ContainerClient(
            account_url=record.blob_endpoint,
            container_name=record.flow_code_container_name,
            credential=DefaultAzureCredential(),
        )
        with contextlib.suppress(ResourceExistsError):
            container.create_container()
        upload_flow_code(container, flows_dir)
        deploy_demo(FLOW_CODE_BLOCK, record.work_pool_name, DEPLOYMENT)


def worker_group(side: LocalSide, image: str, api_url: str) -> dict:
    """arm/azuredeploy.json's worker container group, evaluated for the local Azure."""
    template = load_template(TEMPLATE)
    [resource] = [
        r
        for r in template["resources"]
        if r["type"] == "Microsoft.ContainerInstance/containerGroups"
    ]
    config = side.config
    references = {
        identity.resource_id.lower(): {
            "clientId": identity.client_id,
            "principalId": identity.principal_id,
        }
        for identity in config.identities
    }
    scope = Scope(
        config.subscription_id,
        config.resource_group,
        config.location,
        "prefect-aci-infra",
        template,
        {
            "location": config.location,
            "prefectApiUrl": api_url,
            "prefectApiKey": LOCAL_API_KEY,
            "workerImage": image,
            "workPoolName": side.record.work_pool_name,
            "deployRegistry": False,
            "deployWorker": True,
        },
        references,
    )
    body = {k: v for k, v in resource.items() if k not in ("condition", "dependsOn")}
    return without_nulls(evaluate(body, scope))


def start_worker(local_aci: str, side: LocalSide, image: str, api_url: str) -> str:
    """Create the worker's container group through the Container Instances API; its name."""
    group = worker_group(side, image, api_url)
    client = ContainerInstanceManagementClient(
        DefaultAzureCredential(), side.config.subscription_id, base_url=local_aci
    )
    payload = {k: group[k] for k in ("location", "identity", "properties") if k in group}
    client.container_groups.begin_create_or_update(
        side.config.resource_group, group["name"], ContainerGroup.deserialize(payload)
    ).result()
    return group["name"]


def run(api: str) -> DemoRun:
    """Run the demo deployment, wait for its end, and read its logs back from the API."""
    with temporary_settings(updates={PREFECT_API_URL: api}):
        flow_run = run_deployment(f"{FLOW_NAME}/{DEPLOYMENT}", timeout=900)
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


def main() -> None:
    """The child process: `python -m prefect_aci.demo.wiring STATE_DIR`; prints registration's
    lines, writes the worker group's name to STATE_DIR/worker.json."""
    root = Path(sys.argv[1])
    request = Request(**json.loads((root / REQUEST).read_text()))
    side = load_side(root / "local-azure")
    try:
        image = read_record(root / "image.json", PublishedImage)
        wire(request.api, image, side.record, Path(request.flows_dir))
        worker = start_worker(
            request.local_aci, side, image.reference, f"http://{SERVER_ALIAS}:4200/api"
        )
        (root / ANSWER).write_text(json.dumps({"worker_group": worker}) + "\n")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
