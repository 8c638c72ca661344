"""No run left behind: each way a flow run on ACI can die, through the real worker on local ACI,
ends in the run's true final state with the group gone. Each test says how long the run took to
reach that state (printed, never a threshold: the fault table in docs/reliability.md is made from
them)."""

import os
import signal
import time

import docker
import pytest
from prefect import get_client
from prefect.client.schemas.objects import StateType
from prefect.settings import temporary_settings
from prefect.states import Cancelling

from blocks.inputs import HEARTBEAT_SECONDS, default_window_seconds
from prefect_aci.core.names import FLOW_NAME
from prefect_aci.demo.flow_run import DEPLOYMENT
from prefect_aci.demo.stack import stack_id
from prefect_aci.local_aci.config import LABEL
from tests.demo.conftest import Stack
from tests.demo.test_aci_behaviour import worker_logs
from tests.demo.test_worker_paths import (
    TERMINAL,
    deploy,
    group_of,
    run,
    sweep,
    test_flows,  # noqa: F401 (a fixture)
    wait,
)


def containers_of(stack: Stack, group: str) -> list:
    """The group's running containers in this stack: another stack's group of the same name (a
    worker group whose restart policy brought it back when the Docker engine restarted) is not."""
    key = f"{stack.record.resource_group}/{group}".lower()
    client = docker.from_env()
    mine = [f"{LABEL}.stack={stack_id(stack.folder)}", f"{LABEL}.group={key}"]
    return client.containers.list(filters={"label": mine})


def running_and_logged(stack: Stack, flow_run, line: str, timeout: float = 300) -> None:
    """Wait until the run is Running and its container has logged ``line``."""
    wait(stack, flow_run, {StateType.RUNNING})
    deadline = time.monotonic() + timeout
    while line not in worker_logs(stack, flow_run.id):
        assert time.monotonic() < deadline, worker_logs(stack, flow_run.id)[-3000:]
        time.sleep(2)


def kill_worker_and_run(stack: Stack, group: str) -> float:
    """The worker's process dies (as on a node failure: Docker's restart policy brings it back,
    which a `docker kill`, a manual stop, would not) and the run's container too; when."""
    [worker] = containers_of(stack, stack.state.worker_group)
    [container] = containers_of(stack, group)
    started = time.monotonic()
    os.kill(worker.attrs["State"]["Pid"], signal.SIGKILL)
    container.kill()
    return started


def report(scenario: str, started: float, final, stack: Stack, group: str) -> None:
    gone = stack.group_gone(group, timeout=180)
    seconds = round(time.monotonic() - started)
    left = 0 if gone else 1
    print(f"FAULT | {scenario} | {final.state.type.value} | {seconds} s | groups left: {left}")
    assert gone, f"{group} is still there"


def test_the_flow_runs_container_killed_mid_run_ends_crashed(stack, test_flows):  # noqa: F811
    deployment = deploy(stack, test_flows, "test_flows/sleeps.py:sleeps")
    flow_run = run(stack, deployment, parameters={"seconds": 300})
    wait(stack, flow_run, {StateType.RUNNING})
    started = time.monotonic()
    [container] = containers_of(stack, group_of(flow_run, "sleeps"))
    container.kill()  # SIGKILL: exit 137, the engine cannot report
    final = wait(stack, flow_run, TERMINAL, timeout=300)
    assert final.state.type == StateType.CRASHED, final.state
    assert "137" in str(final.state.message), final.state.message
    report(
        "flow-run container killed, worker alive",
        started,
        final,
        stack,
        group_of(flow_run, "sleeps"),
    )


def test_out_of_memory_ends_crashed_with_exit_137(stack, test_flows):  # noqa: F811
    deployment = deploy(stack, test_flows, "test_flows/eats_memory.py:eats_memory")
    started = time.monotonic()
    flow_run = run(stack, deployment, parameters={"megabytes": 2048}, job_variables={"memory": 0.5})
    final = wait(stack, flow_run, TERMINAL, timeout=420)
    assert final.state.type == StateType.CRASHED, final.state
    # The kernel kills the flow's process (SIGKILL, 137 for a container's main process); the
    # engine in the container reports it, naming the memory limit.
    message = str(final.state.message)
    assert "SIGKILL" in message or "137" in message, message
    assert "memory" in message, message
    report("out of memory (exit 137)", started, final, stack, group_of(flow_run, "eats-memory"))


THROTTLED = (429, "TooManyRequests")
UNAVAILABLE = (503, "ServiceUnavailable")


@pytest.mark.parametrize(
    "faults",
    [
        # One run meets each fault on each of the worker's calls: the deployment's PUT, its
        # poll, and the group's GET.
        {
            "PUT /deployments/": THROTTLED,
            "GET /operationstatuses/": UNAVAILABLE,
            "GET /containergroups/sleeps-": THROTTLED,
        },
        {
            "PUT /deployments/": UNAVAILABLE,
            "GET /operationstatuses/": THROTTLED,
            "GET /containergroups/sleeps-": UNAVAILABLE,
        },
    ],
    ids=["429-put-503-poll-429-get", "503-put-429-poll-503-get"],
)
def test_arm_throttling_and_unavailability_are_retried_and_the_run_completes(
    stack,
    test_flows,  # noqa: F811
    faults,
):
    deployment = deploy(stack, test_flows, "test_flows/sleeps.py:sleeps")
    for call, (status, code) in faults.items():
        method, where = call.split(" ")
        stack.inject_fault(method, where, status, 2, code=code, retry_after=2)
    started = time.monotonic()
    flow_run = run(stack, deployment, parameters={"seconds": 5})
    final = wait(stack, flow_run, TERMINAL)
    assert final.state.type == StateType.COMPLETED, final.state
    assert stack.faults_left() == 0  # every one was served, and retried past
    scenario = ", ".join(f"{status} on {call}" for call, (status, _) in faults.items())
    report(f"ARM {scenario}", started, final, stack, group_of(flow_run, "sleeps"))


def test_the_regional_quota_exhausted_fails_the_run_and_the_next_one_runs(stack, test_flows):  # noqa: F811
    deployment = deploy(stack, test_flows, "test_flows/sleeps.py:sleeps")
    with stack.changed(standard_cores_quota=0.5):  # less than one flow run's 1 CPU
        started = time.monotonic()
        flow_run = run(stack, deployment, parameters={"seconds": 1})
        final = wait(stack, flow_run, TERMINAL)
    assert final.state.type in (StateType.CRASHED, StateType.FAILED), final.state
    assert "quota" in str(final.state.message).lower(), final.state.message
    report("regional quota exhausted", started, final, stack, group_of(flow_run, "sleeps"))
    after = wait(stack, run(stack, deployment, parameters={"seconds": 1}), TERMINAL)
    assert after.state.type == StateType.COMPLETED, after.state


def test_a_run_cancelled_as_soon_as_it_is_submitted_is_cancelled_and_its_group_deleted(
    stack,
    test_flows,  # noqa: F811
):
    deployment = deploy(stack, test_flows, "test_flows/sleeps.py:sleeps")
    flow_run = run(stack, deployment, parameters={"seconds": 300})
    wait(stack, flow_run, {StateType.PENDING, StateType.RUNNING})
    started = time.monotonic()
    with temporary_settings(stack.api_settings), get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run.id, Cancelling(), force=True)
    final = wait(stack, flow_run, TERMINAL)
    assert final.state.type == StateType.CANCELLED, final.state
    report(
        "cancelled as soon as submitted (Pending or just Running)",
        started,
        final,
        stack,
        group_of(flow_run, "sleeps"),
    )


@pytest.mark.parametrize(
    ("entrypoint", "flow_name", "parameters", "expected"),
    [
        ("test_flows/sleeps.py:sleeps", "sleeps", {"seconds": 1}, StateType.COMPLETED),
        ("test_flows/fails.py:fails", "fails-on-purpose", {}, StateType.FAILED),
    ],
)
def test_a_45_s_delete_keeps_the_runs_true_state(
    stack,
    test_flows,  # noqa: F811
    entrypoint,
    flow_name,
    parameters,
    expected,
):
    """prefect-azure waits 30 s for a group's deletion and then raises from its cleanup; the
    engine reported the run's state from inside the container before that, and nothing may
    overwrite it."""
    deployment = deploy(stack, test_flows, entrypoint)
    with stack.changed(container_group_delete_seconds=45):
        started = time.monotonic()
        flow_run = run(stack, deployment, parameters=parameters)
        final = wait(stack, flow_run, TERMINAL)
        assert final.state.type == expected, final.state
        report(
            f"45 s DELETE, {expected.value.lower()} flow",
            started,
            final,
            stack,
            group_of(flow_run, flow_name),
        )
    with temporary_settings(stack.api_settings), get_client(sync_client=True) as client:
        assert client.read_flow_run(flow_run.id).state.type == expected


def test_the_worker_and_the_runs_container_killed_mid_run_end_crashed_and_the_worker_returns(
    stack,
    test_flows,  # noqa: F811
):
    """The demo run with hold_seconds=120: while it is Running, its container and the worker's
    both die, and nobody is left to report it. Its heartbeats stop, and the automation
    `register` made marks it Crashed within its window (docs/azure.md); the worker's group
    (restart policy Always) starts its container again, and that worker takes the next run. The
    dead run's group is the sweep's (`prefect-aci azure sweep`)."""
    with temporary_settings(stack.api_settings), get_client(sync_client=True) as client:
        demo = client.read_deployment_by_name(f"{FLOW_NAME}/{DEPLOYMENT}").id
    flow_run = run(stack, demo, parameters={"hold_seconds": 120})
    # Holding: the engine has sent its first heartbeat long before (at its start).
    running_and_logged(stack, flow_run, "Holding for 120 s")
    started = kill_worker_and_run(stack, group_of(flow_run, FLOW_NAME))
    window = default_window_seconds(HEARTBEAT_SECONDS)
    # Within the window after the last heartbeat, plus the server's evaluation (every 5 s).
    final = wait(stack, flow_run, TERMINAL, timeout=window + 60)
    assert final.state.type == StateType.CRASHED, final.state
    print(
        f"crashed {round(time.monotonic() - started)} s after both were killed (window {window} s)"
    )
    deployment = deploy(stack, test_flows, "test_flows/sleeps.py:sleeps")
    after = wait(stack, run(stack, deployment, parameters={"seconds": 1}), TERMINAL)
    assert after.state.type == StateType.COMPLETED, after.state
    swept = sweep(stack)
    assert swept.returncode == 0, swept.stderr[-3000:]
    group = group_of(flow_run, FLOW_NAME)
    report("worker and flow-run container killed", started, final, stack, group)
