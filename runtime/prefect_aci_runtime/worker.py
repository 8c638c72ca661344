"""The `azure-container-instance-standby` worker: prefect-azure's ACI worker whose container group
request is a claim on a standby pool.

prefect-azure always writes the run's image, command and environment into the group's first
container, and Azure refuses a claim that carries anything but the config map ("ContainerGroup
properties other than config map are not allowed"). So the job configuration rewrites the group
after prefect-azure prepared it; the worker's watching, logging, cancellation and deletion are
prefect-azure's, unchanged (a claimed group has the requested name).
"""

from typing import Any

from prefect_azure.workers.container_instance import (
    AzureContainerJobConfiguration,
    AzureContainerVariables,
    AzureContainerWorker,
)
from pydantic import Field

# The apiVersion that has containerGroupProfile, standbyPoolProfile and configMap (GA).
CLAIM_API_VERSION = "2025-09-01"
# The profile's container: its config map is mounted at /mnt/configmap/prefect-job/ (warm.py).
PROFILE_CONTAINER = "prefect-job"
GROUP_TYPE = "Microsoft.ContainerInstance/containerGroups"
# A claim's group keeps only these top-level keys; identities are applied at claim time.
CLAIM_KEYS = ("type", "apiVersion", "name", "location", "tags", "identity", "dependsOn")

_POOL_ID = "Resource id of the Microsoft.StandbyPool/standbyContainerGroupPools to claim from."
_PROFILE_ID = (
    "Resource id of the Microsoft.ContainerInstance/containerGroupProfiles the pool runs; it "
    "carries the image, command, resources, network and the secure PREFECT_API_KEY."
)
_REVISION = "The profile's revision the pool runs; none for the latest."
_FAIL = (
    "Fail the run when the pool has no ready group, instead of ACI's normal (cold) create; "
    "none for Azure's default (create)."
)


class StandbyVariables(AzureContainerVariables):
    standby_pool_id: str | None = Field(default=None, title="Standby pool", description=_POOL_ID)
    container_group_profile_id: str | None = Field(
        default=None, title="Container group profile", description=_PROFILE_ID
    )
    container_group_profile_revision: int | None = Field(
        default=None, title="Profile revision", description=_REVISION
    )
    fail_on_reuse_failure: bool | None = Field(
        default=None, title="Fail when no standby group is ready", description=_FAIL
    )


class StandbyJobConfiguration(AzureContainerJobConfiguration):
    standby_pool_id: str | None = Field(default=None)
    container_group_profile_id: str | None = Field(default=None)
    container_group_profile_revision: int | None = Field(default=None)
    fail_on_reuse_failure: bool | None = Field(default=None)

    def prepare_for_flow_run(self, flow_run, *args: Any, **kwargs: Any) -> None:
        """prefect-azure's preparation, then its container group turned into a claim (when the
        pool names a standby pool; without one the request is prefect-azure's own)."""
        super().prepare_for_flow_run(flow_run, *args, **kwargs)
        if self.standby_pool_id is None:
            return
        if not self.container_group_profile_id:
            raise ValueError(
                "standby_pool_id is set but container_group_profile_id is not: a claim names "
                "the profile its pool runs; set both in the work pool's job variables"
            )
        resources = self.arm_template["resources"]
        for index, resource in enumerate(resources):
            if resource.get("type") == GROUP_TYPE:
                resources[index] = claim(resource, self._claim_properties())

    def _claim_properties(self) -> dict[str, Any]:
        profile: dict[str, Any] = {"id": self.container_group_profile_id}
        if self.container_group_profile_revision is not None:
            profile["revision"] = self.container_group_profile_revision
        pool: dict[str, Any] = {"id": self.standby_pool_id}
        if self.fail_on_reuse_failure is not None:
            pool["failContainerGroupCreateOnReuseFailure"] = self.fail_on_reuse_failure
        return {"containerGroupProfile": profile, "standbyPoolProfile": pool}


def config_map(environment_variables: list[dict[str, Any]]) -> dict[str, str]:
    """The container's non-secret environment as config map pairs. A group's GET shows its config
    map in plain text, so secure values (PREFECT_API_KEY, PREFECT_API_AUTH_STRING) never go in:
    the profile carries them as secure values."""
    return {
        variable["name"]: str(variable["value"])
        for variable in environment_variables
        if "secureValue" not in variable and variable.get("value") is not None
    }


def claim(group: dict[str, Any], references: dict[str, Any]) -> dict[str, Any]:
    """``group``, a container group prefect-azure prepared, as a claim: the profile and pool
    references, and one container named as the profile's with the run's config map."""
    container = group["properties"]["containers"][0]["properties"]
    pairs = config_map(container.get("environmentVariables", []))
    result = {key: group[key] for key in CLAIM_KEYS if key in group}
    result["apiVersion"] = CLAIM_API_VERSION
    result["properties"] = {
        **references,
        "containers": [
            {"name": PROFILE_CONTAINER, "properties": {"configMap": {"keyValuePairs": pairs}}}
        ],
    }
    return result


class AzureContainerStandbyWorker(AzureContainerWorker):
    """prefect-azure's ACI worker, claiming each flow run's group from a standby pool."""

    type: str = "azure-container-instance-standby"
    job_configuration = StandbyJobConfiguration
    job_configuration_variables = StandbyVariables
    _display_name = "Azure Container Instances (standby pool)"
    _description = (
        "Execute flow runs in container groups claimed from an Azure Container Instances "
        "standby pool (prefect-aci); falls back to a normal create when none is ready."
    )
