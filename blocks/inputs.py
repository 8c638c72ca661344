"""What registration reads besides the two records: its settings from the environment."""

from pydantic import Field, SecretStr

from prefect_aci.core.settings import ProjectSettings


class RegistrationSettings(ProjectSettings):
    # A service principal for the worker's Azure calls; unset means the worker's managed identity.
    azure_tenant_id: str | None = Field(None, validation_alias="AZURE_TENANT_ID")
    azure_client_id: str | None = Field(None, validation_alias="AZURE_CLIENT_ID")
    azure_client_secret: SecretStr | None = Field(None, validation_alias="AZURE_CLIENT_SECRET")
    # Overrides the pool name the ARM deployment recorded.
    work_pool_name: str | None = None

    def with_managed_identity(self) -> "RegistrationSettings":
        """These settings without a service principal: where the AZURE_* variables sign *you* in
        (deploy-all, the demo), the worker must use its own managed identity, never your
        secret."""
        return self.model_copy(
            update={"azure_tenant_id": None, "azure_client_id": None, "azure_client_secret": None}
        )
