"""The local Azure: what the stand-ins know (subscription, identities, role assignments, the vault's
secrets) and how the containers they start are wired (networks, host entries, the local CA).

The stack writes it to <state dir>/local-azure/stand-in/config.json (mode 0600: it holds the
vault's secret values, as Key Vault does) and mounts that folder into the stand-in's container
read-only."""

from pathlib import Path

from pydantic import BaseModel, Field

# Prefix of the Docker labels on what a local ACI stack makes: `<LABEL>.stack`, the stack's id
# (Wiring.stack_id), is how a stack, its stand-in and the IMDS router find that stack's parts only.
LABEL = "io.prefect-aci.local-aci"
# Role names as Azure spells them; the stand-ins check these.
KEY_VAULT_SECRETS_USER = "Key Vault Secrets User"
WORKER_ROLE = "Prefect ACI worker"
OWNER = "Owner"
# What a role lets its holder do against Resource Manager (the worker's custom role: its calls).
ARM_ROLES = (WORKER_ROLE, OWNER)


class Identity(BaseModel):
    name: str
    resource_id: str
    client_id: str
    principal_id: str


class RoleAssignment(BaseModel):
    principal_id: str
    role: str
    scope: str


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
    identities: list[Identity]
    roles: list[RoleAssignment]
    vault_name: str
    secrets: dict[str, str] = Field(repr=False)
    admin_principal_id: str = Field(description="The deployer: the stack's own calls.")
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

    def has_role(self, principal_id: str, roles: tuple[str, ...], scope: str) -> bool:
        """A role assigned at ``scope`` or above it (the resource group, the subscription)."""
        wanted = scope.lower()
        return any(
            r.principal_id == principal_id
            and r.role in roles
            and wanted.startswith(r.scope.lower().rstrip("/"))
            for r in self.roles
        )


def write_config(path: Path, config: LocalAzure) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.touch(mode=0o600)
    tmp.write_text(config.model_dump_json(indent=2))
    tmp.replace(path)


def read_config(path: Path) -> LocalAzure:
    return LocalAzure.model_validate_json(path.read_text())
