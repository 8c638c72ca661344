"""The paths a flow run takes through the real azure-container-instance worker on the local ACI,
beyond the happy one: a flow that raises, a command that fails before the engine starts, an image
that does not exist, a transient 503 from Container Instances, a cancellation, and a pool template
that Azure's schema rejects. Each run's code comes from Blob storage like the demo's."""

import copy
import os
import subprocess
import time
import uuid

import pytest
from prefect import get_client
from prefect.client.schemas.actions import WorkPoolUpdate
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.settings import temporary_settings
from prefect.states import Cancelling

from prefect_aci.core.names import FLOW_NAME
from prefect_aci.demo.flow_run import DEPLOYMENT
from tests.conftest import run_cli
from tests.demo.conftest import TEST_FLOWS, Stack
from tests.stand_ins import AzureHostsProxy

TERMINAL = {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}


@pytest.fixture(scope="module")
def test_flows(stack: Stack) -> dict:
    """The test flows uploaded beside the demo's code; the pull step the demo deployment uses."""
    container = stack.flow_code()
    for path in TEST_FLOWS.glob("*.py"):
        container.upload_blob(f"test_flows/{path.name}", path.read_bytes(), overwrite=True)
    with temporary_settings(stack.api_settings), get_client(sync_client=True) as client:
        demo = client.read_deployment_by_name(f"{FLOW_NAME}/{DEPLOYMENT}")
    return {"pull_steps": demo.pull_steps, "pool": demo.work_pool_name}


def deploy(stack: Stack, test_flows: dict, entrypoint: str, pool: str | None = None) -> uuid.UUID:
    flow_name = entrypoint.rsplit(":", 1)[1].replace("_", "-")
    with temporary_settings(stack.api_settings), get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name(flow_name)
        return client.create_deployment(
            flow_id,
            f"test-{uuid.uuid4().hex[:6]}",
            entrypoint=entrypoint,
            pull_steps=test_flows["pull_steps"],
            work_pool_name=pool or test_flows["pool"],
        )


def run(
    stack: Stack,
    deployment: uuid.UUID,
    job_variables: dict | None = None,
    parameters: dict | None = None,
) -> FlowRun:
    with temporary_settings(stack.api_settings), get_client(sync_client=True) as client:
        return client.create_flow_run_from_deployment(
            deployment, job_variables=job_variables, parameters=parameters
        )


def wait(stack: Stack, flow_run: FlowRun, until: set, timeout: float = 420) -> FlowRun:
    deadline = time.monotonic() + timeout
    with temporary_settings(stack.api_settings), get_client(sync_client=True) as client:
        while True:
            current = client.read_flow_run(flow_run.id)
            if current.state and current.state.type in until:
                return current
            assert time.monotonic() < deadline, f"still {current.state} after {timeout}s"
            time.sleep(2)


def sweep(stack: Stack, *args: str) -> subprocess.CompletedProcess:
    """`prefect-aci azure sweep --older-than 0s` as a user runs it, signed in as the deployer and
    sent to management.azure.com (local ACI, through a proxy that knows only that host)."""
    door = ("127.0.0.1", stack.state.ports["local-aci"])
    proxy = AzureHostsProxy({"management.azure.com:443": door})
    try:
        return run_cli(
            "azure",
            "sweep",
            "--older-than",
            "0s",
            *args,
            env={
                **{name: None for name in os.environ if name.startswith("AZURE_")},
                **proxy.env(),
                "AZURE_SUBSCRIPTION_ID": stack.side.config.subscription_id,
                "AZURE_RESOURCE_GROUP": stack.record.resource_group,
                **stack.api_env,
                **stack.side.deployer_env(stack.local_aci),
            },
            timeout=300,
        )
    finally:
        proxy.close()


def group_of(flow_run: FlowRun, flow_name: str) -> str:
    return f"{flow_name}-{flow_run.id}"


def test_a_flow_that_raises_ends_failed(stack, test_flows):
    deployment = deploy(stack, test_flows, "test_flows/fails.py:fails")
    final = wait(stack, run(stack, deployment), TERMINAL)
    assert final.state.type == StateType.FAILED, final.state
    assert "this flow fails on purpose" in str(final.state.message)


def test_a_command_that_fails_before_the_engine_ends_crashed_and_its_output_is_findable(
    stack, test_flows
):
    deployment = deploy(stack, test_flows, "test_flows/fails.py:fails")
    marker = f"boom-before-engine-{uuid.uuid4().hex[:8]}"
    flow_run = run(
        stack,
        deployment,
        {
            "command": f"-g -- /bin/sh -c 'echo {marker} >&2; exit 3'",
            # The group stays (stopped) after the run, so its output can be read from ACI.
            "keep_container_group": True,
        },
    )
    final = wait(stack, flow_run, TERMINAL)
    assert final.state.type == StateType.CRASHED, final.state
    assert "exited with non-zero status code 3" in str(final.state.message), final.state.message
    aci = stack.aci()
    name = group_of(flow_run, "fails")
    group = aci.container_groups.get(stack.record.resource_group, name)
    logs = aci.containers.list_logs(stack.record.resource_group, name, group.containers[0].name)
    assert marker in logs.content
    aci.container_groups.begin_delete(stack.record.resource_group, name).result()


def test_an_image_that_does_not_exist_fails_the_run_clearly_before_the_start_timeout(
    stack, test_flows
):
    deployment = deploy(stack, test_flows, "test_flows/fails.py:fails")
    missing = stack.image().split("@")[0] + "-missing@sha256:" + "0" * 64
    started = time.monotonic()
    final = wait(stack, run(stack, deployment, {"image": missing}), TERMINAL)
    elapsed = time.monotonic() - started
    assert final.state.type == StateType.CRASHED, final.state
    assert "InaccessibleImage" in str(final.state.message) or "not accessible" in str(
        final.state.message
    ), final.state.message
    assert elapsed < 600  # the pool's task_start_timeout_seconds


def test_a_503_on_the_container_group_get_is_retried_and_the_run_completes(stack, test_flows):
    deployment = deploy(stack, test_flows, "test_flows/sleeps.py:sleeps")
    flow_run = run(stack, deployment, parameters={"seconds": 5})
    # The next two GETs of this run's group answer 503; the worker retries such errors.
    stack.inject_fault("GET", group_of(flow_run, "sleeps"), 503, 2)
    final = wait(stack, flow_run, TERMINAL)
    assert final.state.type == StateType.COMPLETED, final.state
    assert stack.faults_left() == 0  # both 503s were served, and retried past


def test_a_run_cancelled_from_the_api_has_its_group_deleted(stack, test_flows):
    deployment = deploy(stack, test_flows, "test_flows/sleeps.py:sleeps")
    flow_run = run(stack, deployment)
    wait(stack, flow_run, {StateType.RUNNING})
    with temporary_settings(stack.api_settings), get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run.id, Cancelling(), force=True)
    final = wait(stack, flow_run, TERMINAL)
    assert final.state.type == StateType.CANCELLED, final.state
    # The worker deletes the group as the run's infrastructure is torn down, at most a poll later.
    assert stack.group_gone(group_of(flow_run, "sleeps"))


def test_a_pool_template_with_a_typo_gives_arms_error_in_the_run_state(stack, test_flows):
    """The demo's worker polls the demo's pool: give that pool a misspelt property for one run."""
    deployment = deploy(stack, test_flows, "test_flows/fails.py:fails")
    with temporary_settings(stack.api_settings), get_client(sync_client=True) as client:
        original = client.read_work_pool(test_flows["pool"]).base_job_template
        template = copy.deepcopy(original)
        container = template["job_configuration"]["arm_template"]["resources"][0]["properties"][
            "containers"
        ][0]["properties"]
        container["comand"] = container.pop("command")
        client.update_work_pool(test_flows["pool"], WorkPoolUpdate(base_job_template=template))
        try:
            final = wait(stack, run(stack, deployment), TERMINAL)
        finally:
            client.update_work_pool(test_flows["pool"], WorkPoolUpdate(base_job_template=original))
    assert final.state.type == StateType.CRASHED, final.state
    message = str(final.state.message)
    assert "InvalidTemplateDeployment" in message, message
    assert "Could not find member 'comand'" in message, message


def test_a_worker_that_dies_mid_run_leaves_a_group_that_azure_sweep_removes(stack, test_flows):
    """The worker dies while a run goes on (its group is stopped through Container Instances);
    the run ends on its own, its group stays behind, billing; `prefect-aci azure sweep`, signed
    in as the deployer and sent to management.azure.com (local ACI, through a proxy that knows
    only that host), deletes it and spares the worker's group."""
    aci, group = stack.aci(), stack.record.resource_group
    worker = stack.state.worker_group
    deployment = deploy(stack, test_flows, "test_flows/sleeps.py:sleeps")
    flow_run = run(stack, deployment, parameters={"seconds": 20})
    wait(stack, flow_run, {StateType.RUNNING})
    aci.container_groups.stop(group, worker)
    try:
        final = wait(stack, flow_run, TERMINAL)
        assert final.state.type == StateType.COMPLETED, final.state
        left = group_of(flow_run, "sleeps")
        assert aci.container_groups.get(group, left).name == left  # nobody deleted it
        swept = sweep(stack)
        assert swept.returncode == 0, swept.stderr[-3000:]
        assert left in swept.stdout
        assert stack.group_gone(left, timeout=10)
        assert aci.container_groups.get(group, worker).name == worker
    finally:
        aci.container_groups.begin_start(group, worker).result()
