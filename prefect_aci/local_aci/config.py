"""The local Azure before anything is deployed: the tenant, the subscription, the resource group,
the deployer's identity and its role (ARM's shapes), where Blob storage is (Azurite), and how the
containers the stand-ins start are wired (networks, host entries, the local CA). What templates
deploy (identities, roles, vaults and their secrets, storage) lives in Resource Manager's store
(prefect_aci.local_aci.resources, read through prefect_aci.local_aci.directory).

The stack writes it to <state dir>/local-azure/stand-in/config.json (mode 0600) and mounts that
folder into the stand-in's container read-only."""

import uuid
from pathlib import Path

from pydantic import BaseModel, Field

# Prefix of the Docker labels on what a local ACI stack makes: `<LABEL>.stack`, the stack's id
# (Wiring.stack_id), is how a stack, its stand-in and the IMDS router find that stack's parts only.
LABEL = "io.prefect-aci.local-aci"
# Resource Manager's host name: where containers reach the stand-in (a key of Wiring.extra_hosts).
MANAGEMENT_HOST = "management.azure.com"


class Identity(BaseModel):
    name: str
    resource_id: str
    client_id: str
    principal_id: str


class Wiring(BaseModel):
    """How the stand-in wires the containers of a container group."""

    stack_id: str = Field(description="Label value that marks everything this stack made.")
    network: str = Field(description="Docker network that stands in for the delegated subnet.")
    imds_network: str = Field(description="Link-local Docker network where IMDS answers.")
    extra_hosts: dict[str, str] = Field(description="Azure host names -> the stand-in's address.")
    ca_bundle_host_path: str = Field(description="CA bundle (certifi's roots + local CA), host.")
    ca_bundle_container_path: str = "/etc/prefect-aci/local-ca.pem"
    config_maps_folder: str | None = Field(
        None,
        description="Folder of the container groups' config maps (one file per key), at the "
        "same path for the Docker engine and the stand-in: bind-mounted read-only into each "
        "container at /mnt/configmap/<container name>, rewritten in place. None: groups get "
        "no config map mount, and a group or claim that carries a config map is refused.",
    )


class LocalAzure(BaseModel):
    tenant_id: str
    subscription_id: str
    resource_group: str
    location: str = "local"
    resource_group_exists: bool = Field(
        True,
        description="Whether the resource group exists when local Azure starts; False: every "
        "call in it answers ResourceGroupNotFound until a PUT creates it.",
    )
    # Container Instances' behaviour (prefect_aci/local_aci/container_rules.py); a test changes
    # them at run time through the stack's door (/_local/settings).
    container_group_delete_seconds: float = Field(
        1.0,
        description="How long a container group DELETE (202, async operation) takes; Azure "
        "takes 30-90 s for a group in a virtual network, longer with an identity.",
    )
    standard_cores_quota: float = Field(
        100,
        description="The region's 'Standard sku cores (CPUs)' quota (Microsoft Learn: 100 by "
        "default), counted over the groups that hold cores.",
    )
    list_page_size: int = Field(
        100,
        ge=1,
        description="The most items a list answers in one page (Azure's `nextLink` leads to "
        "the next); small in tests, so the SDKs' pagers follow it.",
    )
    identities: list[Identity] = Field(
        description="The stack's own identities (the deployer); deployed ones are in the store."
    )
    role_definitions: list[dict] = Field(
        default_factory=list,
        description="Custom role definitions beside the deployed ones, ARM's GET shape "
        "(built-in roles are known).",
    )
    role_assignments: list[dict] = Field(
        default_factory=list,
        description="Role assignments beside the deployed ones (the deployer's), ARM's GET shape.",
    )
    role_assignment_delay_seconds: float = Field(
        0.0,
        description="How long after its createdOn a role assignment takes effect (Azure's "
        "propagation is eventually consistent); 0: at once.",
    )
    blob_endpoint: str | None = Field(
        None,
        description="Azurite's blob endpoint (its account in the path), which every storage "
        "account deployed here answers as; None: storage accounts are only recorded.",
    )
    blob_account_key: str | None = Field(
        None,
        description="The key of Azurite's account (base64), random per stack, with which the "
        "Storage provider makes blob containers; None: Azurite's published development key.",
    )
    admin_principal_id: str = Field(description="The deployer: the stack's own calls.")
    standby_pool_provider_principal_id: str = Field(
        default_factory=lambda: str(uuid.uuid4()),
        description="Object id of the first-party service principal 'Standby Pool Resource "
        "Provider' in this tenant (Azure: a different one per tenant, found with `az ad sp list "
        "--display-name 'Standby Pool Resource Provider'`): standby pool members are created "
        "as this principal, with the roles a template assigns it.",
    )
    registry_upstream: str | None = Field(
        None,
        description="Base URL of the plain OCI registry (e.g. http://127.0.0.1:5000) that stores "
        "the images of the deployed registries served at <name>.azurecr.io; None: ACR's token "
        "exchange only.",
    )
    wiring: Wiring

    @property
    def resource_group_id(self) -> str:
        return f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"


def write_config(path: Path, config: LocalAzure) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.touch(mode=0o600)
    tmp.write_text(config.model_dump_json(indent=2))
    tmp.replace(path)


def read_config(path: Path) -> LocalAzure:
    return LocalAzure.model_validate_json(path.read_text())
