"""What registration reads besides the two records: its settings from the environment."""

from pydantic import Field, SecretStr

from prefect_aci.core.settings import ProjectSettings


class RegistrationSettings(ProjectSettings):
    # A service principal for the worker's Azure calls, under names of its own
    # (PREFECT_ACI_WORKER_TENANT_ID, _CLIENT_ID, _CLIENT_SECRET); unset means the worker's managed
    # identity. Never AZURE_*: those sign in whoever runs prefect-aci, often an Owner.
    worker_tenant_id: str | None = None
    worker_client_id: str | None = None
    worker_client_secret: SecretStr | None = None
    # Who is signed in here, read only so that register refuses to store that principal.
    signed_in_client_id: str | None = Field(None, validation_alias="AZURE_CLIENT_ID")
    # Overrides the pool name the ARM deployment recorded.
    work_pool_name: str | None = None

    def with_managed_identity(self) -> "RegistrationSettings":
        """These settings without a service principal for the worker: where the worker runs in
        ACI with its own managed identity (deploy-all, the demo)."""
        return self.model_copy(
            update={
                "worker_tenant_id": None,
                "worker_client_id": None,
                "worker_client_secret": None,
            }
        )
