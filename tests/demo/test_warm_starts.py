"""Warm starts on the demo stack (`demo up --standby 1`): the demo flow run's group was claimed
from the template's ACI standby pool, as its GET says, and the pool is back to its size after it;
with the pool empty, a run still completes through ACI's fallback to a normal create. All of it
through the real `azure-container-instance-standby` worker (prefect-azure's, claiming) and local
Azure's Resource Manager, read and changed by resource id as on Azure."""

import time

from azure.mgmt.resource.resources.models import GenericResource
from prefect import get_client
from prefect.client.schemas.objects import StateType
from prefect.settings import temporary_settings
from prefect.states import Cancelling

from prefect_aci.core.names import DEMO_STANDBY_DEPLOYMENT, FLOW_NAME
from prefect_aci.demo import flow_run
from prefect_aci.demo.warm import POOL_API, WarmWatch, ready_members, wait_for_refill
from tests.demo.conftest import STANDBY, Stack
from tests.demo.test_no_run_left_behind import running_and_logged
from tests.demo.test_worker_paths import TERMINAL, group_of, run, wait


def resources(stack: Stack):
    return stack.side.resources(stack.local_aci)


def resize(stack: Stack, size: int) -> None:
    """The pool's ready capacity set to ``size`` by a PUT of the pool, as a user would."""
    client = resources(stack)
    pool = client.resources.get_by_id(stack.record.standby_pool_id, POOL_API)
    properties = dict(pool.properties)
    properties["elasticityProfile"] = {**properties["elasticityProfile"], "maxReadyCapacity": size}
    properties.pop("provisioningState", None)
    client.resources.begin_create_or_update_by_id(
        stack.record.standby_pool_id,
        POOL_API,
        GenericResource(location=pool.location, properties=properties),
    ).result()


def test_the_demo_run_was_claimed_from_the_standby_pool_which_refilled(stack):
    assert stack.up.returncode == 0, stack.up.stderr[-3000:]
    said = " ".join(stack.up.stderr.split())
    assert "warm: its group was claimed from the standby pool (isCreatedFromStandbyPool)" in said
    assert f"standby pool {STANDBY}/{STANDBY} ready after it" in said
    assert ready_members(resources(stack), stack.record.standby_pool_id) == STANDBY


def test_with_the_pool_empty_a_run_completes_through_the_fallback(stack):
    client = resources(stack)
    pool = stack.record.standby_pool_id
    resize(stack, 0)
    try:
        deadline = time.monotonic() + 120
        while ready_members(client, pool) and time.monotonic() < deadline:
            time.sleep(1)
        assert ready_members(client, pool) == 0
        watch = WarmWatch(client, stack.side.config.resource_group_id, FLOW_NAME)
        run = flow_run.run(
            stack.api,
            auth_string=stack.auth_string(),
            deployment=DEMO_STANDBY_DEPLOYMENT,
            observe=watch,
        )
        assert run.state == "COMPLETED", (run.state_name, run.message, run.logs[-10:])
        assert watch.warm is False
        assert stack.group_gone(f"{FLOW_NAME}-{run.flow_run_id}")
    finally:
        resize(stack, STANDBY)
    assert wait_for_refill(client, pool) == (STANDBY, STANDBY)


def test_a_claimed_run_cancelled_while_running_ends_cancelled_and_its_group_goes(stack):
    """Cancellation is prefect-azure's, unchanged: it deletes the claimed group, whose one process
    runs the engine; the pool refills."""
    with temporary_settings(stack.api_settings), get_client(sync_client=True) as client:
        warm = client.read_deployment_by_name(f"{FLOW_NAME}/{DEMO_STANDBY_DEPLOYMENT}").id
    flow_run = run(stack, warm, parameters={"hold_seconds": 120})
    running_and_logged(stack, flow_run, "Holding for 120 s")
    with temporary_settings(stack.api_settings), get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run.id, Cancelling(), force=True)
    final = wait(stack, flow_run, TERMINAL, timeout=120)
    assert final.state.type == StateType.CANCELLED, final.state
    assert stack.group_gone(group_of(flow_run, FLOW_NAME))
    assert wait_for_refill(resources(stack), stack.record.standby_pool_id) == (STANDBY, STANDBY)
