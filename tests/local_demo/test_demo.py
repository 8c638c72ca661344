"""`python -m local_demo up` end to end, as `make demo` runs it, then `down`.

The stand-ins are real: Debian's docker-registry, Azurite from npm, a Prefect server from our
image, and prefect-docker's worker running the flow in our image from the local registry."""

import json
import subprocess
import sys
import time

import docker
import pytest
from docker.errors import NotFound

from image_builder.settings import PROJECT_ROOT
from local_demo.cli import DEMO_DIR
from local_demo.stack import server_container


def local_demo(*args, record=None, timeout=1200):
    extra = ["--record", str(record)] if record else []
    return subprocess.run(
        [sys.executable, "-m", "local_demo", *args, *extra],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def demo_run(built_image, tmp_path_factory):
    record = tmp_path_factory.mktemp("demo") / "image.json"
    record.write_text(built_image.model_dump_json())
    result = local_demo("up", record=record)
    state = json.loads((DEMO_DIR / "state.json").read_text())
    yield result, state
    local_demo("down")


def test_demo_flow_run_completes(demo_run):
    result, _ = demo_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert "flow run" in result.stderr and ": Completed" in result.stderr


def test_demo_flow_ran_under_tini_in_our_image(demo_run):
    result, _ = demo_run
    assert "Process 1 of this container is /usr/bin/tini" in result.stderr


def test_demo_flow_code_came_from_azurite(demo_run):
    result, _ = demo_run
    assert "Executing deployment step: pull_with_block" in result.stderr
    assert "Deployment step 'pull_with_block' completed successfully" in result.stderr
    assert "reading 1 secret(s) from Prefect Secret blocks" in result.stderr


def test_demo_image_came_through_the_local_registry(demo_run, built_image):
    pushed = json.loads((DEMO_DIR / "image.json").read_text())
    assert pushed["reference"].startswith("127.0.0.1:")
    assert pushed["image_id"] == built_image.image_id


def test_the_command_aci_would_run_completes_a_flow_run(demo_run):
    """Render the ACI job from our work pool template with prefect-azure's own code, then run its
    command and env the way ACI does (command replaces the entrypoint) against the demo server.

    AZURE_CLIENT_ID and KEY_VAULT_URL are left out: there is no vault here, so the flow takes its
    local path; everything else is as rendered."""
    import asyncio
    import uuid

    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolUpdate
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect_azure import AzureContainerInstanceCredentials
    from prefect_azure.workers.container_instance import AzureContainerJobConfiguration

    from blocks.inputs import AzureSide
    from blocks.work_pool import base_job_template
    from local_demo.stack import DEPLOYMENT, WORK_POOL

    result, state = demo_run
    assert result.returncode == 0, result.stderr[-2000:]
    api = f"http://127.0.0.1:{state['ports']['prefect']}/api"
    reference = json.loads((DEMO_DIR / "image.json").read_text())["reference"]
    sub = str(uuid.uuid4())
    rg = f"/subscriptions/{sub}/resourceGroups/demo"
    azure = AzureSide(
        subscription_id=sub,
        resource_group="demo",
        job_identity_id=f"{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/job",
        job_identity_client_id=str(uuid.uuid4()),
        subnet_id=f"{rg}/providers/Microsoft.Network/virtualNetworks/v/subnets/aci",
        key_vault_url="https://demo.vault.azure.net/",
        storage_account="demo",
        flow_code_container="flow-code",
        work_pool="aci-pool",
        registry="",
        blob_endpoint="https://demo.blob.core.windows.net",
    )

    async def render():
        async with get_client() as client:
            deployment = await client.read_deployment_by_name(DEPLOYMENT)
            flow_run = await client.create_flow_run_from_deployment(deployment.id)
            config = await AzureContainerJobConfiguration.from_template_and_values(
                base_job_template(azure, reference, str(credentials_id), None), {}, client=client
            )
        config.prepare_for_flow_run(flow_run)
        return flow_run, config

    with temporary_settings({PREFECT_API_URL: api}):
        credentials_id = AzureContainerInstanceCredentials().save("aci-render", overwrite=True)
        with get_client(sync_client=True) as client:
            # The demo's Docker worker must not take this run: ACI's command will.
            client.update_work_pool(WORK_POOL, WorkPoolUpdate(is_paused=True))
        try:
            flow_run, config = asyncio.run(render())
            container = config.arm_template["resources"][0]["properties"]["containers"][0]
            command = container["properties"]["command"]
            env = {
                v["name"]: v.get("value", v.get("secureValue"))
                for v in container["properties"]["environmentVariables"]
                if v["name"] not in ("AZURE_CLIENT_ID", "KEY_VAULT_URL")
            }
            assert command[:4] == ["/usr/bin/tini", "-g", "--", "/opt/prefect/entrypoint.sh"]
            engine = docker.from_env()
            run = engine.containers.run(
                reference,
                command[1:],
                entrypoint=[command[0]],
                environment=env,
                network_mode="host",
                detach=True,
            )
            try:
                exit_code = run.wait(timeout=300)["StatusCode"]
                logs = run.logs().decode()
            finally:
                run.remove(force=True)
            with get_client(sync_client=True) as client:
                final = client.read_flow_run(flow_run.id).state
        finally:
            with get_client(sync_client=True) as client:
                client.update_work_pool(WORK_POOL, WorkPoolUpdate(is_paused=False))
    assert exit_code == 0, logs[-3000:]
    assert final.is_completed(), logs[-3000:]
    assert "Process 1 of this container is /usr/bin/tini" in logs


# Last: it tears the stack down.
def test_demo_down_removes_what_up_started(demo_run):
    _, state = demo_run
    down = local_demo("down")
    assert down.returncode == 0, down.stderr
    client = docker.from_env()
    with pytest.raises(NotFound):
        client.containers.get(server_container(DEMO_DIR))
    assert not (DEMO_DIR / "state.json").exists()
    assert [pid for pid in state["pids"].values() if not gone(pid)] == []


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
