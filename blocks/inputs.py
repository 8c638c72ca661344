"""What registration reads besides the two records: its settings from the environment."""

import re

from pydantic import Field, SecretStr, field_validator

from prefect_aci.core.names import SECRET_ENV_NAME
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
    # More environment for every flow run of the pool (JSON object): plain values, so no secrets.
    pool_env: dict[str, str] = Field(default_factory=dict)

    @field_validator("pool_env")
    @classmethod
    def _no_secrets_in_plain_env(cls, env: dict[str, str]) -> dict[str, str]:
        secret_like = sorted(n for n in env if re.search(SECRET_ENV_NAME, n, re.IGNORECASE))
        if secret_like:
            raise ValueError(
                f"names {', '.join(secret_like)}, which look like secrets: the pool's env reaches "
                "ACI as plain values that anyone who may read container groups sees. Put them in "
                "the Key Vault (the job identity reads it; docs/azure.md) and read them in the "
                "flow, or rename them if they are not secrets"
            )
        return env

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
