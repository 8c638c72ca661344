"""What registration reads besides the two records: settings from the environment, and the checks
that the image is pushed and pinned."""

from pathlib import Path

from pydantic import SecretStr

from image_builder.registry import ACR_SUFFIXES
from prefect_aci.core.errors import UserError
from prefect_aci.core.records import ImageRecord, read_record
from prefect_aci.core.settings import ProjectSettings


class RegistrationSettings(ProjectSettings):
    # A service principal for the worker's Azure calls; unset means the worker's managed identity.
    azure_tenant_id: str | None = None
    azure_client_id: str | None = None
    azure_client_secret: SecretStr | None = None
    # Overrides the pool name the ARM deployment recorded.
    work_pool_name: str | None = None


def pushed_image(path: Path) -> ImageRecord:
    record = read_record(path)
    if not record.pinned:
        raise UserError(
            f"{path} has no pinned reference; push the image first (make push REGISTRY=...)"
        )
    return record


def image_in_acr(record: ImageRecord) -> bool:
    return bool(record.registry) and record.registry.endswith(ACR_SUFFIXES)
