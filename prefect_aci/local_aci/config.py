"""The local Azure: what the stand-ins know (subscription, identities, role definitions and role
assignments in ARM's shapes, the vault's secrets) and how the containers they start are wired
(networks, host entries, the local CA).

The stack writes it to <state dir>/local-azure/stand-in/config.json (mode 0600: it holds the
vault's secret values, as Key Vault does) and mounts that folder into the stand-in's container
read-only."""

from pathlib import Path

from pydantic import BaseModel, Field

from prefect_aci.local_aci.authorization import Authorization

# Prefix of the Docker labels on what a local ACI stack makes: `<LABEL>.stack`, the stack's id
# (Wiring.stack_id), is how a stack, its stand-in and the IMDS router find that stack's parts only.
LABEL = "io.prefect-aci.local-aci"


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


class LocalAzure(BaseModel):
    tenant_id: str
    subscription_id: str
    resource_group: str
    location: str = "local"
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
    identities: list[Identity]
    role_definitions: list[dict] = Field(
        default_factory=list,
        description="Custom role definitions, ARM's GET shape (built-in roles are known).",
    )
    role_assignments: list[dict] = Field(
        default_factory=list, description="Role assignments, ARM's GET shape."
    )
    role_assignment_delay_seconds: float = Field(
        0.0,
        description="How long after its createdOn a role assignment takes effect (Azure's "
        "propagation is eventually consistent); 0: at once.",
    )
    vault_name: str
    secrets: dict[str, str] = Field(repr=False)
    admin_principal_id: str = Field(description="The deployer: the stack's own calls.")
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

    @property
    def vault_host(self) -> str:
        return f"{self.vault_name}.vault.azure.net"

    @property
    def vault_id(self) -> str:
        return f"{self.resource_group_id}/providers/Microsoft.KeyVault/vaults/{self.vault_name}"

    def identity_by_resource_id(self, resource_id: str) -> Identity | None:
        wanted = resource_id.lower()
        return next((i for i in self.identities if i.resource_id.lower() == wanted), None)

    def identity_by_principal(self, principal_id: str) -> Identity | None:
        return next((i for i in self.identities if i.principal_id == principal_id), None)

    def authorization(self) -> Authorization:
        """Azure RBAC over this local Azure's role definitions and assignments."""
        return Authorization(
            definitions=self.role_definitions,
            assignments=self.role_assignments,
            delay_seconds=self.role_assignment_delay_seconds,
        )


def write_config(path: Path, config: LocalAzure) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.touch(mode=0o600)
    tmp.write_text(config.model_dump_json(indent=2))
    tmp.replace(path)


def read_config(path: Path) -> LocalAzure:
    return LocalAzure.model_validate_json(path.read_text())
