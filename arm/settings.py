"""Settings of the Azure side, from the environment or .env: PREFECT_ACI_<FIELD>, but for the
Azure target and the Prefect API, which keep the names other tools read (AZURE_*, PREFECT_API_*).

`AzureTarget` is where things go (enough for `azure destroy`); `InfraSettings` adds what the
template takes. Both load through prefect_aci.core.settings.load, which names every missing or
malformed variable on one line.
"""

import re
from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, model_validator

from prefect_aci.core.names import DEFAULT_WORK_POOL
from prefect_aci.core.prefect_api import prefect_api_refusal
from prefect_aci.core.settings import GUID, GUID_PATTERN, ProjectSettings, SweepEvery, matches


def _subscription(value: str) -> str:
    if not GUID.match(value):
        raise ValueError(
            f"must be a subscription id like 00000000-0000-0000-0000-000000000000; got {value!r}"
        )
    return value


def _url(value: str) -> str:
    if not re.match(r"^https?://[^\s/]+", value):
        raise ValueError(f"must be an http(s) URL of the Prefect API; got {value!r}")
    return value.rstrip("/")


def _endpoint(value: str) -> str:
    if not re.match(r"^https://[^\s/]+/?$", value):
        raise ValueError(
            f"must be an https:// address like https://management.azure.com; got {value!r}"
        )
    return value.rstrip("/")


def _key_vault(value: str | None) -> str | None:
    if value is None:
        return None
    if not re.match(r"^[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$", value) or "--" in value:
        raise ValueError(
            "must be 3-24 letters, digits or dashes, start with a letter, end with a "
            f"letter or digit, no '--'; got {value!r}"
        )
    return value


class AzureTarget(ProjectSettings):
    """The subscription and resource group to work in."""

    azure_subscription_id: Annotated[str, AfterValidator(_subscription)] = Field(
        validation_alias="AZURE_SUBSCRIPTION_ID"
    )
    azure_resource_group: Annotated[
        str,
        matches(
            r"^[-\w._()]{0,89}[-\w_()]$", "1-90 letters, digits, - _ . ( ), not ending with a dot"
        ),
    ] = Field(validation_alias="AZURE_RESOURCE_GROUP")
    azure_location: Annotated[
        str | None, matches(r"^[a-z0-9]+$", "an Azure region name like westeurope")
    ] = Field(None, validation_alias="AZURE_LOCATION")
    arm_endpoint: Annotated[str, AfterValidator(_endpoint)] = Field(
        "https://management.azure.com",
        description="Azure Resource Manager's address: Azure's public cloud unless you deploy "
        "to local Azure (`prefect-aci demo env`) or a cloud with its own.",
    )


Prefix = Annotated[
    str,
    matches(r"^[a-z][a-z0-9]{2,8}$", "3-9 lower-case letters or digits, starting with a letter"),
]
PoolName = Annotated[str, matches(r"^[\w.-]{1,100}$", "1-100 letters, digits, - _ .")]
# ACI takes fractions of a core and of a GB (0.5); ARM gets them as strings the template parses.
SIZE = matches(r"^(?=.*[1-9])\d{1,2}(\.\d{1,2})?$", "a positive number like 1 or 0.5")
# The most one Linux container group gets, in a virtual network too (Microsoft Learn, "Resource
# availability & quota limits for ACI", Standard container resources: 4 CPU, 16 GB); the worker
# group has one container, so its requests are the group's. A region under load can offer less,
# which ARM reports when it deploys.
MAX_CPU = Decimal(4)
MAX_MEMORY_GB = Decimal(16)
# ACI refuses other memory sizes: "The memory requirement should be in increments of 0.1 GB"
# (ACI's error, quoted in Azure/azure-cli#7355 and CompositionalIT/farmer#1004).
MEMORY_STEP_GB = Decimal("0.1")


def _at_most(limit: Decimal, unit: str):
    def validate(value: str) -> str:
        if Decimal(value) > limit:
            raise ValueError(
                f"must be at most {limit} ({unit}: ACI's maximum for a Linux container group); "
                f"got {value!r}"
            )
        return value

    return AfterValidator(validate)


def _memory_step(value: str) -> str:
    if Decimal(value) % MEMORY_STEP_GB:
        raise ValueError(f"must be a multiple of 0.1 (GB: ACI's memory granularity); got {value!r}")
    return value


Cpu = Annotated[str, SIZE, _at_most(MAX_CPU, "cores")]
MemoryGb = Annotated[str, SIZE, AfterValidator(_memory_step), _at_most(MAX_MEMORY_GB, "GB")]


def _retention_days(value: object) -> int:
    """Key Vault's soft-delete retention: Azure takes 7 to 90 days."""
    text = str(value).strip()
    if not re.match(r"^\d{1,2}$", text) or not 7 <= int(text) <= 90:
        raise ValueError(f"must be a whole number of days from 7 to 90; got {value!r}")
    return int(text)


def _whole(low: int, high: int, unit: str):
    """A whole number from ``low`` to ``high`` (of ``unit``), as the environment gives it."""

    def validate(value: object) -> int:
        text = str(value).strip()
        if not re.match(r"^\d{1,6}$", text) or not low <= int(text) <= high:
            raise ValueError(
                f"must be a whole number of {unit} from {low} to {high}; got {value!r}"
            )
        return int(text)

    return validate


# Azure bounds a standby container group pool's maxReadyCapacity to 0..2000 (the StandbyPool
# REST spec's standbyContainerGroupPool.tsp; its JSON schema says only >= 0).
MAX_STANDBY_POOL_SIZE = 2000
PROVIDER_PRINCIPAL_HINT = (
    "az ad sp list --display-name 'Standby Pool Resource Provider' --query [0].id -o tsv"
)


def standby_pool_refusal(size: int, provider_principal_id: str) -> str | None:
    """Why a standby pool of ``size`` cannot be deployed, or None: the pool's resource provider
    needs roles, and ARM cannot look up its service principal's object id in the tenant."""
    if size and not provider_principal_id:
        return (
            f"PREFECT_ACI_STANDBY_POOL_SIZE={size} needs "
            "PREFECT_ACI_STANDBY_POOL_PROVIDER_PRINCIPAL_ID, the object id of Microsoft's "
            f"'Standby Pool Resource Provider' in your tenant: {PROVIDER_PRINCIPAL_HINT}"
        )
    return None


class InfraSettings(AzureTarget):
    """What arm/azuredeploy.json takes, besides the target."""

    prefix: Prefix = "prefect"
    key_vault_name: Annotated[str | None, AfterValidator(_key_vault)] = None
    prefect_api_url: Annotated[str, AfterValidator(_url)] = Field(
        validation_alias="PREFECT_API_URL"
    )
    prefect_api_key: SecretStr | None = Field(None, validation_alias="PREFECT_API_KEY")
    prefect_api_auth_string: SecretStr | None = Field(
        None,
        validation_alias="PREFECT_API_AUTH_STRING",
        description="A self-hosted server's basic-auth string (user:password).",
    )
    allow_http_api_url: bool = Field(
        False, description="Let the worker reach a Prefect API over plain http off loopback."
    )
    demo_secret_value: SecretStr | None = Field(
        None, description="Value of the demo secret; a random one is made when unset."
    )
    work_pool_name: PoolName = DEFAULT_WORK_POOL
    deploy_registry: bool = True
    # Premium: the documented way to pull with a managed identity into a VNet (docs/azure.md).
    registry_sku: Annotated[
        str, matches(r"^(Basic|Standard|Premium)$", "Basic, Standard or Premium")
    ] = "Premium"
    deploy_worker: bool = True
    enable_purge_protection: bool = False
    # Azure sets it only when the vault is created; deploy refuses another value for an existing
    # vault (arm/deploy.py).
    key_vault_retention_days: Annotated[int, BeforeValidator(_retention_days)] = 90
    worker_cpu: Cpu = "1"
    worker_memory_gb: MemoryGb = "2"
    sweep_every: SweepEvery = Field(
        None,
        description="Run `prefect-aci azure sweep` this often (15m, 1h) as a scheduled "
        "deployment on the pool: the template gives the job identity the sweeper role and "
        "register makes the deployment. Unset: neither (run the sweep yourself).",
    )
    # A flow run's size in the standby pool's container group profile: the work pool's defaults
    # (blocks/work_pool.py CPU, MEMORY_GB).
    flow_run_cpu: Cpu = "1"
    flow_run_memory_gb: MemoryGb = "2"
    standby_pool_size: Annotated[
        int, BeforeValidator(_whole(0, MAX_STANDBY_POOL_SIZE, "container groups"))
    ] = Field(
        0,
        description="Container groups an ACI standby pool keeps ready for flow runs to claim; 0 "
        "deploys no pool.",
    )
    standby_pool_provider_principal_id: Annotated[
        str,
        matches(rf"^({GUID_PATTERN})?$", "an object id like 00000000-0000-0000-0000-000000000000"),
    ] = Field(
        "",
        description="Object id of Microsoft's 'Standby Pool Resource Provider' service principal "
        f"in your tenant ({PROVIDER_PRINCIPAL_HINT}).",
    )

    @model_validator(mode="after")
    def _prefect_api_reachable_safely(self) -> "InfraSettings":
        refusal = prefect_api_refusal(
            self.prefect_api_url, self.allow_http_api_url, bool(self.prefect_api_key)
        )
        if refusal:
            raise ValueError(refusal)
        return self

    @model_validator(mode="after")
    def _standby_pool_has_its_provider(self) -> "InfraSettings":
        refusal = standby_pool_refusal(
            self.standby_pool_size, self.standby_pool_provider_principal_id
        )
        if refusal:
            raise ValueError(refusal)
        return self


class SweepSettings(AzureTarget):
    """What `prefect-aci azure sweep` reads besides the target: whose worker group to spare, and
    the Prefect API that knows the flow runs (the workspace the worker serves)."""

    prefix: Prefix = "prefect"
    prefect_api_url: Annotated[str, AfterValidator(_url)] = Field(
        validation_alias="PREFECT_API_URL"
    )
    prefect_api_key: SecretStr | None = Field(None, validation_alias="PREFECT_API_KEY")
    prefect_api_auth_string: SecretStr | None = Field(
        None, validation_alias="PREFECT_API_AUTH_STRING"
    )
    work_pool_name: PoolName = DEFAULT_WORK_POOL
    sweep_grace_seconds: Annotated[int, BeforeValidator(_whole(0, 86400, "seconds"))] = Field(
        60,
        description="How long after a flow run's container ended (or, with no group, after the "
        "run's last state change) the sweep leaves the run to its engine and worker before it "
        "marks it Crashed.",
    )
    sweep_log_lines: Annotated[int, BeforeValidator(_whole(1, 10000, "lines"))] = Field(
        50,
        description="How many of a container's last log lines the sweep writes to the flow run's "
        "logs before it deletes the group of a run it ends.",
    )
    allow_http_api_url: bool = False

    @model_validator(mode="after")
    def _prefect_api_reachable_safely(self) -> "SweepSettings":
        refusal = prefect_api_refusal(
            self.prefect_api_url, self.allow_http_api_url, bool(self.prefect_api_key), "the sweep"
        )
        if refusal:
            raise ValueError(refusal)
        return self
