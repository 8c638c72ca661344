"""The two records one stage hands the next, each with one reader and one writer:

- build/image.json (`ImageRecord`): written by `image build`, completed by `image push`; read by
  the ARM deployment (the worker's image), registration (the pool's image) and the demo.
- build/azure.json (`AzureRecord`): the ARM deployment's outputs, written by `azure deploy` (or the
  local stack); read by registration and deploy-all.
"""

from pathlib import Path
from typing import Annotated, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from prefect_aci.core.errors import UserError
from prefect_aci.core.settings import GUID_PATTERN, matches


class ImageRecord(BaseModel):
    image_id: str = Field(description="Local image id (sha256:...) of the built image.")
    repository: str = Field(description="Local repository name.")
    local_tags: list[str] = Field(description="Tags applied locally, repository included.")
    base_image: str = Field(description="Base image the build started from.")
    versions: dict[str, str] = Field(description="python, prefect, prefect_azure, as run.")
    labels: dict[str, str] = Field(default_factory=dict)
    registry: str | None = Field(None, description="Registry the image was pushed to.")
    tags: list[str] = Field(default_factory=list, description="Tags pushed to the registry.")
    digest: str | None = Field(None, description="Manifest digest read back from the registry.")
    reference: str | None = Field(
        None, description="Pinned reference <registry>/<repository>@<digest> for later stages."
    )

    @property
    def pinned(self) -> bool:
        return bool(self.reference) and "@sha256:" in str(self.reference)


def _resource_id(provider_path: str, what: str) -> AfterValidator:
    return matches(
        rf"(?i)^/subscriptions/{GUID_PATTERN}/resourceGroups/[^/]+/providers/{provider_path}$",
        what,
    )


Guid = Annotated[str, matches(rf"^{GUID_PATTERN}$", "a GUID")]
IdentityId = Annotated[
    str,
    _resource_id(
        r"Microsoft\.ManagedIdentity/userAssignedIdentities/[^/]+",
        "a user-assigned identity resource id",
    ),
]
SubnetId = Annotated[
    str,
    _resource_id(r"Microsoft\.Network/virtualNetworks/[^/]+/subnets/[^/]+", "a subnet resource id"),
]
VaultUri = Annotated[
    str, matches(r"(?i)^https://[a-z0-9-]+\.vault\.[a-z0-9.:]+/?$", "a Key Vault URI")
]


class AzureRecord(BaseModel):
    """The outputs of arm/azuredeploy.json, under the template's own output names (aliases)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    subscription_id: Guid = Field(alias="subscriptionId")
    resource_group: str = Field(alias="resourceGroupName", min_length=1)
    location: str = Field("", alias="location")
    key_vault_name: str = Field("", alias="keyVaultName")
    key_vault_uri: VaultUri = Field(alias="keyVaultUri")
    worker_identity_id: IdentityId | None = Field(None, alias="workerIdentityId")
    worker_identity_client_id: Guid | None = Field(None, alias="workerIdentityClientId")
    job_identity_id: IdentityId = Field(alias="jobIdentityId")
    job_identity_client_id: Guid = Field(alias="jobIdentityClientId")
    subnet_id: SubnetId = Field(alias="subnetId")
    nat_public_ip: str = Field("", alias="natPublicIp")
    registry_login_server: str = Field("", alias="registryLoginServer")
    storage_account_name: str = Field(alias="storageAccountName", min_length=1)
    storage_blob_endpoint: str = Field("", alias="storageBlobEndpoint")
    flow_code_container_name: str = Field(alias="flowCodeContainerName", min_length=1)
    work_pool_name: str = Field(alias="workPoolName", min_length=1)

    @property
    def blob_endpoint(self) -> str:
        """The endpoint Azure reports (sovereign clouds differ), else the public cloud's."""
        endpoint = (
            self.storage_blob_endpoint
            or f"https://{self.storage_account_name}.blob.core.windows.net"
        )
        return endpoint.rstrip("/")

    def outputs(self) -> dict[str, object]:
        """The record as ARM named its outputs."""
        return self.model_dump(by_alias=True)


Record = TypeVar("Record", bound=BaseModel)


def write_record(path: Path, record: BaseModel) -> None:
    """Write atomically: a reader never sees half a record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(record.model_dump_json(indent=2, by_alias=True) + "\n")
    tmp.replace(path)


# What to do when a record is missing, and when it is unusable.
_REMEDIES = {
    ImageRecord: ("build the image first (make image)", "build it again (make image)"),
    AzureRecord: (
        "deploy the Azure side first (make deploy-infra)",
        "deploy again (make deploy-infra)",
    ),
}


def read_record(path: Path, model: type[Record] = ImageRecord) -> Record:
    missing, unusable = _REMEDIES.get(model, ("make it first", "make it again"))
    if not path.is_file():
        raise UserError(f"{path} does not exist; {missing}")
    try:
        return model.model_validate_json(path.read_text())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top)"
        message = first["msg"].removeprefix("Value error, ")
        raise UserError(
            f"{path} is not a valid record: {where} {message} "
            f"({exc.error_count()} problem(s)); {unusable}"
        ) from None


def azure_record_from_outputs(outputs: dict[str, object]) -> AzureRecord:
    """An ARM deployment's outputs as a record, or a UserError naming what is wrong."""
    try:
        return AzureRecord.model_validate(outputs)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise UserError(
            f"the deployment's output {where} {first['msg'].removeprefix('Value error, ')}; "
            "check arm/azuredeploy.json's outputs and deploy again"
        ) from None
