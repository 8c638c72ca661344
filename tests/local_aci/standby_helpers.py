"""What the standby pool tests share: ids, a profile, a pool and a claim in Azure's REST shapes,
and the generic Resource Manager client (azure-mgmt-resource's `resources.*_by_id` at an explicit
api-version, as a caller without a Standby Pool SDK reaches Azure)."""

from azure.mgmt.resource import ResourceManagementClient
from azure.mgmt.resource.resources.models import (
    GenericResource,
    IdentityUserAssignedIdentitiesValue,
)
from azure.mgmt.resource.resources.models import (
    Identity as ResourceIdentity,
)

from tests.local_aci.arm_helpers import GROUP_ID, SUBSCRIPTION

PROFILES_API = "2025-09-01"
POOLS_API = "2026-04-01"
GROUPS_API = "2025-09-01"
PROFILE_ID = f"{GROUP_ID}/providers/Microsoft.ContainerInstance/containerGroupProfiles/flow-run"
POOL_ID = f"{GROUP_ID}/providers/Microsoft.StandbyPool/standbyContainerGroupPools/warm-pool"
# The interface with the image's warm waiter: the flow run's container and where it reads.
CONTAINER = "prefect-job"
LOCATION = "westeurope"
# Built-in roles the Standby Pool Resource Provider gets (docs/azure.md "Warm starts").
ACI_CONTRIBUTOR = "5d977122-f97e-4b4d-a52f-6b43003ddb4d"
POOL_CONTRIBUTOR = "39fcb0de-8844-4706-b050-c28ddbe3ff83"


def group_id(name: str) -> str:
    return f"{GROUP_ID}/providers/Microsoft.ContainerInstance/containerGroups/{name}"


def profile(image: str, command: list[str], **extra) -> GenericResource:
    return GenericResource(
        location=LOCATION,
        properties={
            "osType": "Linux",
            "restartPolicy": "Never",
            "sku": "Standard",
            "containers": [
                {
                    "name": CONTAINER,
                    "properties": {
                        "image": image,
                        "command": command,
                        "resources": {"requests": {"cpu": 0.5, "memoryInGB": 0.5}},
                    },
                }
            ],
        },
        **extra,
    )


def pool(capacity: int, revision: int | None = None) -> GenericResource:
    reference = {"id": PROFILE_ID} | ({"revision": revision} if revision is not None else {})
    return GenericResource(
        location=LOCATION,
        properties={
            "elasticityProfile": {"maxReadyCapacity": capacity, "refillPolicy": "always"},
            "containerGroupProperties": {"containerGroupProfile": reference},
        },
    )


def claim(
    values: dict[str, str],
    identity: str | None = None,
    fail_on_reuse_failure: bool = False,
    revision: int | None = 1,
    **container_properties,
) -> GenericResource:
    """A container group request from the standby pool, as the REST spec's example sends it."""
    reference = {"id": PROFILE_ID} | ({"revision": revision} if revision is not None else {})
    found = GenericResource(
        location=LOCATION,
        properties={
            "containerGroupProfile": reference,
            "standbyPoolProfile": {
                "id": POOL_ID,
                "failContainerGroupCreateOnReuseFailure": fail_on_reuse_failure,
            },
            "containers": [
                {
                    "name": CONTAINER,
                    "properties": {
                        "configMap": {"keyValuePairs": values},
                        **container_properties,
                    },
                }
            ],
        },
    )
    if identity:
        found.identity = ResourceIdentity(
            type="UserAssigned",
            user_assigned_identities={identity: IdentityUserAssignedIdentitiesValue()},
        )
    return found


def resources(credential, transport) -> ResourceManagementClient:
    return ResourceManagementClient(credential, SUBSCRIPTION, transport=transport)


def counts(view: dict) -> dict[str, int]:
    """A runtime view's instance counts by state."""
    [summary] = view["properties"]["instanceCountSummary"]
    return {c["state"]: c["count"] for c in summary["instanceCountsByState"]}
