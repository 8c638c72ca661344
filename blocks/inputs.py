"""What registration reads besides the two records: its settings from the environment."""

import re

from pydantic import Field, SecretStr, field_validator, model_validator

from prefect_aci.core.names import SECRET_ENV_NAME
from prefect_aci.core.settings import ProjectSettings, SweepEvery

# Prefect's own floor for PREFECT_FLOWS_HEARTBEAT_FREQUENCY (prefect 3.9.1: settings/models/flows.py
# FlowsSettings.heartbeat_frequency ge=30; flow_engine.py MINIMUM_HEARTBEAT_INTERVAL).
MINIMUM_HEARTBEAT_SECONDS = 30
# Prefect's floor for a proactive trigger's `within` (events/schemas/automations.py EventTrigger).
MINIMUM_WINDOW_SECONDS = 10
HEARTBEAT_SECONDS = 60
# The default window waits for three heartbeats plus a minute for their way to the server and its
# evaluation (every 5 s): one late heartbeat (a slow network, a busy engine) must not crash a
# healthy run.
MISSED_HEARTBEATS = 3
WINDOW_SLACK_SECONDS = 60


def default_window_seconds(heartbeat_seconds: int) -> int:
    """How long a run may go without a heartbeat before it is marked Crashed, by default."""
    return MISSED_HEARTBEATS * heartbeat_seconds + WINDOW_SLACK_SECONDS


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
    # Plain http to a Prefect API off loopback (PREFECT_ACI_ALLOW_HTTP_API_URL), as for deploy.
    allow_http_api_url: bool = False
    # More environment for every flow run of the pool (JSON object): plain values, so no secrets.
    pool_env: dict[str, str] = Field(default_factory=dict)
    # Seconds between a flow run's heartbeats: PREFECT_FLOWS_HEARTBEAT_FREQUENCY in the pool's env.
    heartbeat_seconds: int = Field(HEARTBEAT_SECONDS, ge=MINIMUM_HEARTBEAT_SECONDS)
    # Seconds without a heartbeat after which register's automation marks a run Crashed; unset:
    # default_window_seconds(heartbeat_seconds).
    heartbeat_window_seconds: int | None = Field(None, ge=MINIMUM_WINDOW_SECONDS)
    # How often the sweep runs as a scheduled deployment on the pool (PREFECT_ACI_SWEEP_EVERY,
    # the setting that also gives the job identity the sweeper role in the template); unset: no
    # sweep deployment.
    sweep_every: SweepEvery = None
    # The template's prefix (PREFECT_ACI_PREFIX): the sweep spares the worker's group,
    # <prefix>-worker.
    prefix: str = "prefect"

    @property
    def window_seconds(self) -> int:
        return self.heartbeat_window_seconds or default_window_seconds(self.heartbeat_seconds)

    @model_validator(mode="after")
    def _window_longer_than_a_heartbeat(self) -> "RegistrationSettings":
        if self.window_seconds <= self.heartbeat_seconds:
            raise ValueError(
                f"PREFECT_ACI_HEARTBEAT_WINDOW_SECONDS ({self.window_seconds}) must be longer than "
                f"PREFECT_ACI_HEARTBEAT_SECONDS ({self.heartbeat_seconds}), or every healthy run "
                "is marked Crashed between two heartbeats; leave it unset for "
                f"{MISSED_HEARTBEATS} heartbeats plus {WINDOW_SLACK_SECONDS} s"
            )
        return self

    @field_validator("pool_env")
    @classmethod
    def _no_secrets_in_plain_env(cls, env: dict[str, str]) -> dict[str, str]:
        if "PREFECT_FLOWS_HEARTBEAT_FREQUENCY" in env:
            raise ValueError(
                "names PREFECT_FLOWS_HEARTBEAT_FREQUENCY: set PREFECT_ACI_HEARTBEAT_SECONDS "
                "instead, which the pool's env and the heartbeat automation's window both follow"
            )
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
