"""The ACI worker from the built (trimmed) image: `prefect worker start` against a Prefect server
from the image, and the ARM template its code renders for a flow run, with the Azure clients and
operation groups it calls (azure-mgmt-resource trimmed to its latest API versions)."""

import json

from tests.containers import run_and_wait

RENDER = """
import asyncio, json, uuid
from prefect.client.schemas.objects import FlowRun
from prefect_azure.credentials import AzureContainerInstanceCredentials
from prefect_azure.workers.container_instance import (
    AzureContainerJobConfiguration, AzureContainerWorker)
from azure.mgmt.resource.resources.models import Deployment, DeploymentMode, DeploymentProperties

async def render():
    template = AzureContainerWorker.get_default_base_job_template()
    values = {"resource_group_name": "rg", "subscription_id": str(uuid.uuid4()),
              "image": "example.azurecr.io/flows@sha256:" + "1" * 64}
    config = await AzureContainerJobConfiguration.from_template_and_values(template, values)
    config.prepare_for_flow_run(FlowRun(flow_id=uuid.uuid4(), name="image-test"))
    return config

config = asyncio.run(render())
credentials = AzureContainerInstanceCredentials()
resources = credentials.get_resource_client(str(uuid.uuid4()))
containers = credentials.get_container_client(str(uuid.uuid4()))
body = resources.deployments._serialize.body(Deployment(properties=DeploymentProperties(
    mode=DeploymentMode.INCREMENTAL, template=config.arm_template, parameters={})), "Deployment")
group = config.arm_template["resources"][0]
print(json.dumps({"type": group["type"],
                  "image": group["properties"]["containers"][0]["properties"]["image"],
                  "mode": body["properties"]["mode"],
                  "operations": [type(resources.deployments).__module__,
                                 type(containers.container_groups).__module__]}))
"""


def test_worker_starts_polls_and_stops(docker_client, image, prefect_server, trace):
    done = run_and_wait(
        docker_client,
        image,
        [
            "prefect",
            "worker",
            "start",
            "--pool",
            "image-test-aci",
            "--type",
            "azure-container-instance",
            "--run-once",
            "--with-healthcheck",
        ],
        network_mode="host",
        **trace.container_kwargs({"PREFECT_API_URL": prefect_server}),
    )
    assert done.exit_code == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "AzureContainerWorker" in done.stdout and "started!" in done.stdout
    assert trace.compiled_modules() == set()


def test_worker_renders_the_default_template_with_its_azure_clients(
    docker_client, image, prefect_server, trace
):
    done = run_and_wait(
        docker_client,
        image,
        ["python3", "-c", RENDER],
        network_mode="host",
        **trace.container_kwargs({"PREFECT_API_URL": prefect_server}),
    )
    assert done.exit_code == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["type"] == "Microsoft.ContainerInstance/containerGroups"
    assert seen["image"].startswith("example.azurecr.io/flows@sha256:")
    assert seen["mode"] == "Incremental"
    assert seen["operations"][0].startswith("azure.mgmt.resource.resources.v20")
    assert trace.compiled_modules() == set()
