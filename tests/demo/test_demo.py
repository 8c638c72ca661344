"""`prefect-aci demo up` end to end, as `make demo` runs it, then `status` and `down`.

The stand-ins are real: Debian's docker-registry, Azurite from npm, a Prefect server from our
image (with its UI, opened in headless Chromium), and prefect-docker's worker running the flow in
our image from the local registry. The stack lives in a folder of the test's own and on ports of
its own: a user's `make demo` stack on the same machine is neither reused nor taken down."""

import json
import subprocess
import sys
import time
from pathlib import Path

import docker
import pytest
from docker.errors import NotFound

from image_builder.local_registry import free_port
from prefect_aci.core.names import FLOW_NAME
from prefect_aci.core.paths import PROJECT_ROOT
from prefect_aci.demo.cli import DEMO_DIR
from prefect_aci.demo.stack import server_container
from prefect_aci.demo.wiring import DEPLOYMENT, WORK_POOL
from tests.arm_stand_in import template_outputs
from tests.browser import open_flow_run_page


def demo(*args, state_dir, timeout=1200):
    return subprocess.run(
        [sys.executable, "-m", "prefect_aci", "demo", *args, "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=timeout,
    )


def state_dir_of(demo_run) -> Path:
    return demo_run[2]


@pytest.fixture(scope="module")
def others_containers(docker_client) -> set[str]:
    """Containers that ran before this module started: a user's demo among them, maybe."""
    return {c.id for c in docker_client.containers.list()}


@pytest.fixture(scope="module")
def demo_run(built_image, others_containers, tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    record = folder / "image.json"
    record.write_text(built_image.model_dump_json())
    state_dir = folder / "stack"
    result = demo(
        "up",
        "--no-build",
        "--record",
        str(record),
        "--port",
        str(free_port()),
        state_dir=state_dir,
    )
    state = json.loads((state_dir / "state.json").read_text())
    yield result, state, state_dir
    demo("down", state_dir=state_dir)


def test_demo_flow_run_completes(demo_run):
    result, state, _ = demo_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"flow run {state['flow_run_id']}: Completed" in result.stderr


def test_demo_ends_with_the_ui_and_the_flow_run_page(demo_run):
    result, state, _ = demo_run
    ui = f"http://127.0.0.1:{state['ports']['prefect']}"
    assert f"Prefect UI:     {ui}" in result.stderr
    assert f"This flow run:  {ui}/runs/flow-run/{state['flow_run_id']}" in result.stderr


def test_demo_flow_ran_under_tini_in_our_image(demo_run):
    result, _, _ = demo_run
    assert "Process 1 of this container is /usr/bin/tini" in result.stderr


def test_demo_flow_code_came_from_azurite(demo_run):
    result, _, _ = demo_run
    assert "Executing deployment step: pull_with_block" in result.stderr
    assert "Deployment step 'pull_with_block' completed successfully" in result.stderr
    assert "reading 1 secret(s) from Prefect Secret blocks" in result.stderr


def test_demo_image_came_through_the_local_registry(demo_run, built_image):
    _, _, state_dir = demo_run
    pushed = json.loads((state_dir / "image.json").read_text())
    assert pushed["reference"].startswith("127.0.0.1:")
    assert pushed["image_id"] == built_image.image_id


def test_status_says_what_runs_and_where(demo_run):
    _, state, state_dir = demo_run
    status = demo("status", state_dir=state_dir, timeout=120)
    assert status.returncode == 0, status.stderr
    lines = status.stderr.splitlines()
    ui = f"http://127.0.0.1:{state['ports']['prefect']}"
    assert any("running" in line and f"UI {ui}, API {ui}/api" in line for line in lines), lines
    for part in ("registry", "azurite", "worker"):
        assert any("running" in line and part in line for line in lines), (part, lines)
    assert any(f"{ui}/runs/flow-run/{state['flow_run_id']}" in line for line in lines)


def test_the_ui_shows_the_completed_run_and_its_logs_in_a_browser(demo_run, tmp_path):
    result, state, _ = demo_run
    assert result.returncode == 0, result.stderr[-2000:]
    page = open_flow_run_page(
        f"http://127.0.0.1:{state['ports']['prefect']}",
        state["flow_run_id"],
        expected_state="Completed",
        expected_logs=[
            "Process 1 of this container is /usr/bin/tini",
            "Read secret prefect-aci-demo-secret: 24 characters (value not logged)",
        ],
        screenshot=tmp_path / "flow-run.png",
    )
    assert page.error is None, page
    assert page.state == "Completed", page
    assert not page.api_error_shown, page
    assert page.api_answers, page
    assert len(page.logs_found) == 2, page


def test_the_browser_check_fails_for_a_page_without_that_run(demo_run, tmp_path):
    _, state, _ = demo_run
    page = open_flow_run_page(
        f"http://127.0.0.1:{state['ports']['prefect']}",
        "00000000-0000-0000-0000-000000000000",
        expected_state="Completed",
        expected_logs=["Process 1 of this container is /usr/bin/tini"],
        screenshot=tmp_path / "no-run.png",
        timeout=20,
    )
    assert page.error is not None and page.state is None and page.logs_found == []


def test_the_stack_is_not_the_users(demo_run):
    _, _, state_dir = demo_run
    assert server_container(state_dir) != server_container(DEMO_DIR)


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

    from blocks.work_pool import base_job_template
    from prefect_aci.core.records import AzureRecord

    result, state, _ = demo_run
    assert result.returncode == 0, result.stderr[-2000:]
    api = f"http://127.0.0.1:{state['ports']['prefect']}/api"
    reference = json.loads((state_dir_of(demo_run) / "image.json").read_text())["reference"]
    azure = AzureRecord.model_validate(template_outputs(str(uuid.uuid4()), "demo"))

    async def render():
        async with get_client() as client:
            deployment = await client.read_deployment_by_name(f"{FLOW_NAME}/{DEPLOYMENT}")
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
def test_demo_down_removes_what_up_started_and_nothing_else(
    demo_run, docker_client, others_containers
):
    _, state, state_dir = demo_run
    down = demo("down", state_dir=state_dir, timeout=120)
    assert down.returncode == 0, down.stderr
    with pytest.raises(NotFound):
        docker_client.containers.get(server_container(state_dir))
    assert not (state_dir / "state.json").exists()
    assert [pid for pid in state["pids"].values() if not gone(pid)] == []
    still_running = {c.id for c in docker_client.containers.list()}
    assert others_containers <= still_running
    status = demo("status", state_dir=state_dir, timeout=120)
    assert status.returncode == 0 and "No demo stack was started" in status.stderr


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
