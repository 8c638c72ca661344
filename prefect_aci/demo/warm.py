"""Was a flow run warm? A group claimed from a standby pool says so in its GET
(`isCreatedFromStandbyPool`, Container Instances 2025-09-01), but only while it exists: the worker
deletes it once the run has ended. And is the pool back to its size? Its runtime view counts its
members by state (Standby Pools 2026-04-01). Both read through Resource Manager by resource id,
as on Azure."""

import time

from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.resource import ResourceManagementClient
from prefect.client.schemas.objects import FlowRun

GROUP_API = "2025-09-01"
POOL_API = "2026-04-01"
# How long the demo waits for the pool to be back to its size after a claim.
REFILL_TIMEOUT_SECONDS = 120


def group_id(resource_group_id: str, flow_name: str, flow_run: FlowRun) -> str:
    """prefect-azure names a run's group `<flow name>-<flow run id>`."""
    name = f"{flow_name}-{flow_run.id}"
    return f"{resource_group_id}/providers/Microsoft.ContainerInstance/containerGroups/{name}"


class WarmWatch:
    """Called while a run runs (flow_run.run's ``observe``): reads its group until the group has
    said whether it came from the standby pool."""

    def __init__(self, resources: ResourceManagementClient, resource_group_id: str, flow: str):
        self.resources = resources
        self.resource_group_id = resource_group_id
        self.flow = flow
        self.warm: bool | None = None

    def __call__(self, flow_run: FlowRun) -> None:
        if self.warm is not None:
            return
        try:
            group = self.resources.resources.get_by_id(
                group_id(self.resource_group_id, self.flow, flow_run), GROUP_API
            )
        except ResourceNotFoundError:
            return  # not made yet, or already deleted
        self.warm = bool((group.properties or {}).get("isCreatedFromStandbyPool", False))


def ready_members(resources: ResourceManagementClient, pool_id: str) -> int:
    """The pool's members that are Running (ready to be claimed)."""
    view = resources.resources.get_by_id(f"{pool_id}/runtimeViews/latest", POOL_API)
    counts = (view.properties or {}).get("instanceCountSummary") or [{}]
    return sum(
        entry.get("count", 0)
        for entry in counts[0].get("instanceCountsByState", [])
        if entry.get("state") == "Running"
    )


def pool_size(resources: ResourceManagementClient, pool_id: str) -> int:
    pool = resources.resources.get_by_id(pool_id, POOL_API)
    return int(pool.properties["elasticityProfile"]["maxReadyCapacity"])


def wait_for_refill(
    resources: ResourceManagementClient,
    pool_id: str,
    timeout: float = REFILL_TIMEOUT_SECONDS,
) -> tuple[int, int]:
    """(ready members, the pool's size) once the pool is back to its size, or at ``timeout``."""
    size = pool_size(resources, pool_id)
    deadline = time.monotonic() + timeout
    while (ready := ready_members(resources, pool_id)) < size and time.monotonic() < deadline:
        time.sleep(1)
    return ready, size
