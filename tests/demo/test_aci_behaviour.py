"""Local ACI behaves as Azure Container Instances does where a paper review found it differed
(issue 18 item 4), seen through the unmodified azure-mgmt-containerinstance client over HTTP:
ACI's refusals of a group PUT (a few representative rules; every rule has a fast test in
tests/local_aci/test_container_rules.py), an update that restarts the group's containers, the
regional core quota, a DELETE that is an asynchronous operation, and what a DELETE longer than
prefect-azure's 30 s does to a flow run today.

The settings these tests change (the DELETE's duration, the core quota) are changed at run time
through the stack's own door (/_local/settings, behind the deployer's secret) and put back, so the
package's shared stack serves the other tests unchanged."""

import time
import uuid
from urllib.parse import urlsplit

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.containerinstance.models import ContainerGroup
from prefect import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.client.schemas.objects import StateType
from prefect.settings import temporary_settings

from tests.demo.conftest import Stack
from tests.demo.test_local_aci_protocols import call
from tests.demo.test_worker_paths import (  # noqa: F401 (test_flows is a fixture used here)
    TERMINAL,
    deploy,
    group_of,
    run,
    test_flows,
    wait,
)


def path_of(url: str) -> str:
    """The path and query of an operation URL (local ACI answers at the host it was asked)."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def group(stack: Stack, restart: str = "Never", cpu: float = 0.5, memory: float = 0.5, **extra):
    """A container group of our image that sleeps, in the stack's subnet."""
    environment = extra.pop("environment", [])
    properties = {
        "osType": "Linux",
        "restartPolicy": restart,
        "subnetIds": [{"id": stack.record.subnet_id}],
        "containers": [
            {
                "name": "sleeper",
                "properties": {
                    "image": stack.image(),
                    "command": ["sleep", "300"],
                    "environmentVariables": environment,
                    "resources": {"requests": {"cpu": cpu, "memoryInGB": memory}},
                },
            }
        ],
        **extra,
    }
    return ContainerGroup.deserialize(
        {"location": stack.side.config.location, "properties": properties}
    )


def refused(stack: Stack, name: str, body: ContainerGroup) -> HttpResponseError:
    aci = stack.aci()
    with pytest.raises(HttpResponseError) as caught:
        aci.container_groups.begin_create_or_update(stack.record.resource_group, name, body)
    return caught.value


def create(stack: Stack, name: str, body: ContainerGroup) -> None:
    """PUT the group and return at once (201; `started_at` waits for it, polling each second:
    the SDK's poller would wait its default 30 s between GETs)."""
    stack.aci().container_groups.begin_create_or_update(
        stack.record.resource_group, name, body, polling=False
    )


def started_at(stack: Stack, name: str, timeout: float = 120, after: str = "") -> str:
    """The start time of the group's container once the group is provisioned and it runs (another
    than ``after``)."""
    deadline = time.monotonic() + timeout
    while True:
        found = stack.aci().container_groups.get(stack.record.resource_group, name)
        state = found.containers[0].instance_view.current_state
        provisioned = found.provisioning_state == "Succeeded"
        if provisioned and state.state == "Running" and str(state.start_time) != after:
            return str(state.start_time)
        assert time.monotonic() < deadline, f"{name}: still {state.state} after {timeout}s"
        time.sleep(1)


def test_the_sdk_gets_acis_refusals_and_an_update_restarts_the_groups_containers(stack):
    """Through azure-mgmt-containerinstance: a name ACI refuses, memory not in 0.1 GB steps,
    more than a standard Linux group's 4 CPU (Azure's capacity error, 409), a public IP in a
    subnet, the regional core quota; then an update of what ACI cannot change in place is
    InvalidContainerGroupUpdate, and one it can change restarts the container."""
    rg = stack.record.resource_group
    cases = [
        ("Bad--Name", group(stack), 400, "ContainerGroupNameInvalid"),
        ("aci-rules-memory", group(stack, memory=1.55), 400, "InvalidMemoryRequirement"),
        ("aci-rules-cpu", group(stack, cpu=5, memory=1), 409, "ServiceUnavailable"),
        (
            "aci-rules-public",
            group(stack, ipAddress={"type": "Public", "ports": [{"port": 80}]}),
            400,
            "PublicIPAddressNotSupportedWithSubnet",
        ),
    ]
    for name, body, status, code in cases:
        error = refused(stack, name, body)
        assert (error.status_code, error.error.code) == (status, code), (name, error.message)
    with stack.changed(standard_cores_quota=0.25):
        error = refused(stack, "aci-rules-quota", group(stack))
        assert (error.status_code, error.error.code) == (409, "ContainerGroupQuotaReached")
        assert "container group quota 'StandardCores' exceeded" in error.error.message
    aci, name = stack.aci(), f"aci-rules-update-{uuid.uuid4().hex[:6]}"
    create(stack, name, group(stack))
    try:
        first = started_at(stack, name)
        error = refused(stack, name, group(stack, restart="OnFailure"))
        assert error.error.code == "InvalidContainerGroupUpdate", error.message
        assert "you must delete it first and then create a new one" in error.error.message
        assert started_at(stack, name) == first  # the refused update changed nothing
        updated = group(stack, environment=[{"name": "CHANGED", "value": "1"}])
        create(stack, name, updated)
        started_at(stack, name, after=first)  # restarted, with the new definition
        found = aci.container_groups.get(rg, name).containers[0].environment_variables
        assert [(v.name, v.value) for v in found] == [("CHANGED", "1")]
    finally:
        aci.container_groups.begin_delete(rg, name).result()


def test_delete_is_an_async_operation_the_sdk_poller_follows(stack):
    """DELETE answers 202 with Azure-AsyncOperation and Location; the operation is InProgress and
    the group still answers GET (Deleting) until it ends, then Succeeded and the group 404s.
    `begin_delete().result()` follows it to the end."""
    rg, aci = stack.record.resource_group, stack.aci()
    raw, polled = f"aci-delete-raw-{uuid.uuid4().hex[:6]}", f"aci-delete-sdk-{uuid.uuid4().hex[:6]}"
    for name in (raw, polled):
        create(stack, name, group(stack))
    for name in (raw, polled):
        started_at(stack, name)
    path = (
        f"/subscriptions/{stack.side.config.subscription_id}/resourceGroups/{rg}/providers/"
        f"Microsoft.ContainerInstance/containerGroups/{raw}?api-version=2023-05-01"
    )
    with stack.changed(container_group_delete_seconds=4):
        status, _, headers = call(stack, path, method="DELETE")
        assert status == 202, status
        operation = path_of(headers["Azure-AsyncOperation"])
        assert headers["Azure-AsyncOperation"].startswith("https://management.azure.com/")
        assert "/providers/Microsoft.ContainerInstance/locations/" in operation
        assert headers["Location"] and headers["Retry-After"]
        status, body, _ = call(stack, operation)
        assert (status, body["status"]) == (200, "InProgress")
        assert aci.container_groups.get(rg, raw).provisioning_state == "Deleting"
        deadline = time.monotonic() + 30
        while body["status"] == "InProgress":
            assert time.monotonic() < deadline, body
            time.sleep(0.5)
            status, body, _ = call(stack, operation)
        assert body["status"] == "Succeeded" and body["endTime"]
        with pytest.raises(ResourceNotFoundError):
            aci.container_groups.get(rg, raw)

        started = time.monotonic()
        aci.container_groups.begin_delete(rg, polled).result(timeout=60)
        assert time.monotonic() - started >= 3.5  # the poller waited for the operation
        with pytest.raises(ResourceNotFoundError):
            aci.container_groups.get(rg, polled)


def worker_logs(stack: Stack, flow_run_id: uuid.UUID) -> str:
    with temporary_settings(stack.api_settings), get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        )
    return "\n".join(log.message for log in logs)


def test_a_delete_longer_than_30s_today_leaves_the_run_completed_and_the_worker_lost(
    stack,
    test_flows,  # noqa: F811 (the fixture imported above)
):
    """What a container group DELETE longer than 30 s (on Azure 30-90 s in a VNet, longer with
    an identity) does to a flow run with prefect-azure's worker today.

    The flow ends and its engine reports Completed from inside the container. The worker then
    deletes the group: `begin_delete` is accepted (202) and the worker polls it for at most
    CONTAINER_GROUP_DELETION_TIMEOUT_SECONDS = 30 (hard-coded in
    prefect_azure/workers/container_instance.py), then raises RuntimeError("Timed out after
    ...s while waiting for deletion of container group ...") from its `finally`. Prefect's base
    worker catches it after the run had started and only logs "Lost connection to flow run ...
    infrastructure" with the traceback: the run stays Completed, the worker does not know its
    group went, and Azure finishes the deletion on its own. Observed here with a 50 s DELETE;
    the reliability issue filed with issue 18 fixes the outcome."""
    deployment = deploy(stack, test_flows, "test_flows/sleeps.py:sleeps")
    with stack.changed(container_group_delete_seconds=50):
        flow_run = run(stack, deployment, parameters={"seconds": 1})
        final = wait(stack, flow_run, TERMINAL)
        assert final.state.type == StateType.COMPLETED, final.state
        name = group_of(flow_run, "sleeps")
        deadline = time.monotonic() + 150
        while "Lost connection to flow run" not in (logs := worker_logs(stack, flow_run.id)):
            assert time.monotonic() < deadline, logs[-3000:]
            time.sleep(3)
        assert "Timed out after" in logs and f"deletion of container group {name}" in logs
        # The worker gave up; the deletion goes on and ends on its own.
        assert (
            stack.aci().container_groups.get(stack.record.resource_group, name).provisioning_state
            == "Deleting"
        )
        assert stack.group_gone(name, timeout=90)
    with temporary_settings(stack.api_settings), get_client(sync_client=True) as client:
        assert client.read_flow_run(flow_run.id).state.type == StateType.COMPLETED
