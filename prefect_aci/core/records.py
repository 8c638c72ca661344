"""The two records one stage hands the next:

- build/image.json (`ImageRecord`): written by `image build` (the local build), completed by
  `image push` (where it was published); read by the ARM deployment (the worker's image),
  registration (the pool's image), deploy-all and the demo, which ask for a `PublishedImage`.
- build/azure.json (`AzureRecord`): the ARM deployment's outputs, written by `azure deploy`,
  `deploy-all` or the local stack; read by registration, deploy-all and `azure destroy`.
"""

from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    computed_field,
    model_validator,
)

from prefect_aci.core.errors import UserError
from prefect_aci.core.settings import GUID_PATTERN, matches

Digest = Annotated[str, matches(r"^sha256:[0-9a-f]{64}$", "a sha256 digest (sha256:<64 hex>)")]


class Publication(BaseModel):
    """Where the image was published: a registry, a repository there, its tags and the digest
    the registry serves for them."""

    model_config = ConfigDict(frozen=True)

    registry: str = Field(description="Registry host[:port], e.g. myregistry.azurecr.io.")
    repository: str = Field(description="Repository in the registry, namespace included.")
    tags: list[str] = Field(description="Tags pushed, all to the one digest.")
    digest: Digest = Field(description="Manifest digest read back from the registry.")

    @computed_field
    @property
    def reference(self) -> str:
        """``<registry>/<repository>@<digest>``: what ACI pulls, exactly the bytes pushed.
        Written to the file too, for scripts (``jq -r .published.reference``)."""
        return f"{self.registry}/{self.repository}@{self.digest}"


class ImageRecord(BaseModel):
    """The local build, and where it was published (None until `image push`)."""

    image_id: str = Field(description="Local image id (sha256:...) of the built image.")
    repository: str = Field(description="Local repository name (never the registry's path).")
    local_tags: list[str] = Field(description="Tags applied locally, repository included.")
    base_image: str = Field(description="Base image the build started from.")
    versions: dict[str, str] = Field(description="python, prefect, prefect_azure, as run.")
    labels: dict[str, str] = Field(default_factory=dict)
    published: Publication | None = Field(None, description="Set by `image push`.")

    @model_validator(mode="before")
    @classmethod
    def _from_older_versions(cls, data: Any) -> Any:
        """Records before 0.2 kept the push in flat fields (registry, tags, digest, reference)
        and overwrote ``repository`` with the registry's path; read them as they meant."""
        if not isinstance(data, dict) or "published" in data or "reference" not in data:
            return data
        data = dict(data)
        reference = data.pop("reference", None)
        registry, tags, digest = (
            data.pop("registry", None),
            data.pop("tags", []),
            data.pop("digest", None),
        )
        if data.get("local_tags"):
            data["repository"] = data["local_tags"][0].rsplit(":", 1)[0]
        if reference and registry and digest:
            pushed_to = reference.removeprefix(f"{registry}/").rsplit("@", 1)[0]
            data["published"] = {
                "registry": registry,
                "repository": pushed_to,
                "tags": tags,
                "digest": digest,
            }
        return data


class PublishedImage(ImageRecord):
    """An image record whose image was pushed: what the worker, the pool and the demo run."""

    published: Publication

    @property
    def reference(self) -> str:
        return self.published.reference


def published(record: ImageRecord, where: Path | str = "build/image.json") -> PublishedImage:
    """``record`` as a pushed image, or the one error every consumer gives."""
    if record.published is None:
        raise UserError(
            f"{where} records an image that is not pushed; push it first "
            "(make push REGISTRY=...), which pins its digest"
        )
    return PublishedImage.model_validate(record.model_dump())


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
    # The optional standby pool (standbyPoolSize above 0): empty, and revision 0, without one.
    container_group_profile_id: str = Field("", alias="containerGroupProfileId")
    container_group_profile_revision: int = Field(0, alias="containerGroupProfileRevision", ge=0)
    standby_pool_id: str = Field("", alias="standbyPoolId")
    # The work pool whose worker claims from it (`<workPoolName>-standby`); empty without one.
    standby_work_pool_name: str = Field("", alias="standbyWorkPoolName")

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
    """The record at ``path`` as ``model``; a UserError that says what to run when it is missing,
    unusable, or (for a ``PublishedImage``) not pushed."""
    if model is PublishedImage:
        return published(read_record(path, ImageRecord), path)
    missing, unusable = _REMEDIES.get(model, ("make it first", "make it again"))
    if not path.is_file():
        raise UserError(f"{path} does not exist; {missing}")
    try:
        return model.model_validate_json(path.read_text())
    except ValidationError as exc:
        raise UserError(
            f"{path} is not a valid record: {_first_problem(exc)} "
            f"({exc.error_count()} problem(s)); {unusable}"
        ) from None


def azure_record_from_outputs(outputs: dict[str, object]) -> AzureRecord:
    """An ARM deployment's outputs as a record, or a UserError naming what is wrong."""
    try:
        return AzureRecord.model_validate(outputs)
    except ValidationError as exc:
        raise UserError(
            f"the deployment's output {_first_problem(exc)}; "
            "check arm/azuredeploy.json's outputs and deploy again"
        ) from None


def _first_problem(exc: ValidationError) -> str:
    """``<field> <what is wrong>`` for the first problem pydantic found."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(top)"
    return f"{where} {first['msg'].removeprefix('Value error, ')}"
