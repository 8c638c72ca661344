"""What registration reads: build/image.json, build/azure.json, settings from the environment."""

import json
import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from image_builder.errors import UserError
from image_builder.record import ImageRecord, read_record
from image_builder.registry import ACR_SUFFIXES

GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
IDENTITY_ID = re.compile(
    rf"^/subscriptions/{GUID}/resourceGroups/[^/]+/providers/"
    r"Microsoft\.ManagedIdentity/userAssignedIdentities/[^/]+$",
    re.IGNORECASE,
)
SUBNET_ID = re.compile(
    rf"^/subscriptions/{GUID}/resourceGroups/[^/]+/providers/"
    r"Microsoft\.Network/virtualNetworks/[^/]+/subnets/[^/]+$",
    re.IGNORECASE,
)
REQUIRED_OUTPUTS = (
    "subscriptionId",
    "resourceGroupName",
    "jobIdentityId",
    "jobIdentityClientId",
    "subnetId",
    "keyVaultUri",
    "storageAccountName",
    "flowCodeContainerName",
    "workPoolName",
)


class RegistrationSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # A service principal for the worker's Azure calls; unset means the worker's managed identity.
    azure_tenant_id: str | None = None
    azure_client_id: str | None = None
    azure_client_secret: SecretStr | None = None
    work_pool_name: str | None = None


@dataclass(frozen=True)
class AzureSide:
    subscription_id: str
    resource_group: str
    job_identity_id: str
    job_identity_client_id: str
    subnet_id: str
    key_vault_url: str
    storage_account: str
    flow_code_container: str
    work_pool: str
    registry: str
    blob_endpoint: str


def read_azure(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"{path} does not exist; deploy the Azure side first (make deploy-infra)")
    try:
        outputs = json.loads(path.read_text())
    except ValueError:
        raise UserError(f"{path} is not JSON; deploy again (make deploy-infra)") from None
    missing = [name for name in REQUIRED_OUTPUTS if not outputs.get(name)]
    if missing:
        raise UserError(f"{path} lacks {', '.join(missing)}; deploy again (make deploy-infra)")
    return outputs


def azure_side(outputs: dict, pool_override: str | None) -> AzureSide:
    checks = [
        ("subscriptionId", re.compile(rf"^{GUID}$"), "a subscription id (GUID)"),
        ("jobIdentityId", IDENTITY_ID, "a user-assigned identity resource id"),
        ("jobIdentityClientId", re.compile(rf"^{GUID}$"), "a client id (GUID)"),
        ("subnetId", SUBNET_ID, "a subnet resource id"),
        (
            "keyVaultUri",
            re.compile(r"^https://[a-z0-9-]+\.vault\.[a-z0-9.]+/?$", re.I),
            "a Key Vault URI",
        ),
    ]
    for name, pattern, what in checks:
        if not pattern.match(str(outputs[name])):
            raise UserError(f"{name} in build/azure.json must be {what}; got {outputs[name]!r}")
    return AzureSide(
        subscription_id=outputs["subscriptionId"],
        resource_group=outputs["resourceGroupName"],
        job_identity_id=outputs["jobIdentityId"],
        job_identity_client_id=outputs["jobIdentityClientId"],
        subnet_id=outputs["subnetId"],
        key_vault_url=outputs["keyVaultUri"],
        storage_account=outputs["storageAccountName"],
        flow_code_container=outputs["flowCodeContainerName"],
        work_pool=pool_override or outputs["workPoolName"],
        registry=outputs.get("registryLoginServer") or "",
        # The endpoint Azure reports (sovereign clouds differ); older records lack it.
        blob_endpoint=(
            outputs.get("storageBlobEndpoint")
            or f"https://{outputs['storageAccountName']}.blob.core.windows.net"
        ).rstrip("/"),
    )


def pushed_image(path: Path) -> ImageRecord:
    record = read_record(path)
    if not record.reference or "@sha256:" not in record.reference:
        raise UserError(
            f"{path} has no pinned reference; push the image first (make push REGISTRY=...)"
        )
    return record


def image_in_acr(record: ImageRecord) -> bool:
    return bool(record.registry) and record.registry.endswith(ACR_SUFFIXES)
