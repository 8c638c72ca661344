"""The sweep as a scheduled deployment on the pool (PREFECT_ACI_SWEEP_EVERY): `deploy-all` made
it on the demo stack, and a run of it, in a flow-run container group as the job identity with the
template's sweeper role, ends a run nobody reported and removes its group."""

import datetime
import time

from prefect import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterDeploymentId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import StateType
from prefect.settings import temporary_settings

from blocks.inputs import HEARTBEAT_SECONDS, default_window_seconds
from prefect_aci.core.names import SWEEP_DEPLOYMENT, SWEEP_ENTRYPOINT, SWEEP_FLOW_NAME
from prefect_aci.core.settings import duration
from tests.demo.conftest import SESSION_SWEEP_EVERY, Stack
from tests.demo.test_aci_behaviour import worker_logs
from tests.demo.test_no_run_left_behind import kill_worker_and_run, report, running_and_logged
from tests.demo.test_worker_paths import (
    TERMINAL,
    deploy,
    group_of,
    run,
    test_flows,  # noqa: F401 (a fixture)
    wait,
)

SWEEP_GRACE_SECONDS = 60  # SweepSettings' default: the deployment sets none


def sweep_deployment(stack: Stack):
    with temporary_settings(stack.api_settings), get_client(sync_client=True) as client:
        return client.read_deployment_by_name(f"{SWEEP_FLOW_NAME}/{SWEEP_DEPLOYMENT}")


def test_deploy_all_made_the_sweep_deployment_on_the_pool_with_its_schedule(stack):
    deployment = sweep_deployment(stack)
    record = stack.record
    assert deployment.work_pool_name == record.work_pool_name
    assert deployment.entrypoint == SWEEP_ENTRYPOINT
    assert deployment.parameters == {
        "subscription_id": record.subscription_id,
        "resource_group": record.resource_group,
        "work_pool_name": record.work_pool_name,
        "prefix": "prefect",
        "allow_http_api_url": True,
    }
    [schedule] = deployment.schedules
    assert schedule.active
    assert schedule.schedule.interval == duration(SESSION_SWEEP_EVERY)
    # Its first run is one interval after deploy-all, not at once.
    with temporary_settings(stack.api_settings), get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                deployment_id=FlowRunFilterDeploymentId(any_=[deployment.id])
            )
        )
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    assert all(r.expected_start_time > soon for r in runs if r.state_type == StateType.SCHEDULED)


def test_a_run_of_the_sweep_deployment_ends_a_run_nobody_reported_and_removes_its_group(
    stack,
    test_flows,  # noqa: F811
):
    """Its container and the worker's process die while the run is Running: nobody reports it.
    Before the heartbeat automation's window is over, a run of the sweep deployment (started here
    rather than waiting a week for the schedule) marks it Crashed with why, keeps its container's
    last log lines in its logs, and deletes its group, as the job identity."""
    deployment = deploy(stack, test_flows, "test_flows/sleeps.py:sleeps")
    flow_run = run(stack, deployment, parameters={"seconds": 600})
    running_and_logged(stack, flow_run, "sleeping 600 s")
    group = group_of(flow_run, "sleeps")
    started = kill_worker_and_run(stack, group)
    # The sweep leaves a run to its engine and worker for the grace window after its container
    # ended; the heartbeat automation's window is longer.
    assert default_window_seconds(HEARTBEAT_SECONDS) > SWEEP_GRACE_SECONDS + 60
    time.sleep(SWEEP_GRACE_SECONDS + 5)
    sweep_run = run(stack, sweep_deployment(stack).id)
    swept = wait(stack, sweep_run, TERMINAL, timeout=300)
    assert swept.state.type == StateType.COMPLETED, (
        swept.state,
        worker_logs(stack, sweep_run.id)[-3000:],
    )
    with temporary_settings(stack.api_settings), get_client(sync_client=True) as client:
        final = client.read_flow_run(flow_run.id)
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id]))
        )
    assert final.state.type == StateType.CRASHED, final.state
    assert "found by prefect-aci azure sweep" in str(final.state.message), final.state.message
    assert "137" in str(final.state.message), final.state.message
    kept = [log.message for log in logs if "kept by prefect-aci azure sweep" in log.message]
    assert kept and "sleeping 600 s" in kept[0], [log.message for log in logs]
    report(
        "worker and flow-run container killed, the scheduled sweep", started, final, stack, group
    )
