"""What the local Azure's providers know when they answer: the deployed resources made real.

Resource Manager records what a template deploys (prefect_aci.local_aci.resources); this reads
that record as the runtime Azure's other providers would see it:

- a user-assigned identity gets tokens from IMDS (its clientId and principalId as recorded);
- the template's role definitions and role assignments are the authorisation every stand-in
  enforces, beside the stack's own (the deployer's Owner on the resource group);
- a vault answers at `<name>.vault.azure.net` with the secrets the template put in it;
- a storage account's blob endpoint is Azurite's (prefect_aci.local_aci.config.LocalAzure
  .blob_endpoint), where its containers are made.

The stack's configuration (config.json) holds only what exists before any deployment: the tenant,
the subscription, the resource group, the deployer and its role.
"""

from dataclasses import dataclass

from prefect_aci.local_aci.authorization import Authorization
from prefect_aci.local_aci.config import Identity, LocalAzure
from prefect_aci.local_aci.resources import (
    IDENTITIES,
    ROLE_ASSIGNMENTS,
    ROLE_DEFINITIONS,
    VAULT_SECRETS,
    VAULTS,
    Recorded,
    ResourceStore,
)


@dataclass
class Directory:
    config: LocalAzure
    store: ResourceStore

    # -- identities ---------------------------------------------------------------------------

    def identities(self) -> list[Identity]:
        """The stack's own identities (the deployer) and every deployed user-assigned one."""
        deployed = [
            Identity(
                name=r.body["name"],
                resource_id=r.id,
                client_id=r.properties["clientId"],
                principal_id=r.properties["principalId"],
            )
            for r in self.store.by_type(IDENTITIES)
        ]
        return [*self.config.identities, *deployed]

    def identity_by_resource_id(self, resource_id: str) -> Identity | None:
        wanted = resource_id.lower()
        return next((i for i in self.identities() if i.resource_id.lower() == wanted), None)

    def principal_of(self, resource_id: str) -> str | None:
        """The principal id of the identity with ``resource_id``, None when there is none."""
        found = self.identity_by_resource_id(resource_id)
        return found.principal_id if found else None

    def identity_by_principal(self, principal_id: str) -> Identity | None:
        return next((i for i in self.identities() if i.principal_id == principal_id), None)

    # -- authorisation -------------------------------------------------------------------------

    def authorization(self) -> Authorization:
        """Azure RBAC over the stack's roles and the deployed role definitions and assignments,
        as they are now (a redeployed role or a deleted assignment counts at once)."""
        return Authorization(
            definitions=[
                *self.config.role_definitions,
                *(r.body for r in self.store.by_type(ROLE_DEFINITIONS)),
            ],
            assignments=[
                *self.config.role_assignments,
                *(r.body for r in self.store.by_type(ROLE_ASSIGNMENTS)),
            ],
            delay_seconds=self.config.role_assignment_delay_seconds,
        )

    # -- Key Vault ----------------------------------------------------------------------------

    def vault(self, host: str) -> Recorded | None:
        """The deployed vault that answers at ``host`` (<name>.vault.azure.net)."""
        name = host.lower().removesuffix(".vault.azure.net")
        return next((v for v in self.store.by_type(VAULTS) if v.body["name"].lower() == name), None)

    def secret(self, vault: Recorded, name: str) -> Recorded | None:
        return self.store.get(f"{vault.id}/secrets/{name}") if name else None

    def secrets(self, vault: Recorded) -> list[Recorded]:
        return self.store.under(vault.id, VAULT_SECRETS)
