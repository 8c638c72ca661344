"""The demo deployment `prefect-aci deploy-all` made, run once through the ACI worker: the run's
final state and its logs, read back from the Prefect API."""

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from prefect import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.client.schemas.objects import FlowRun
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

from prefect_aci.core.errors import UserError
from prefect_aci.core.names import DEMO_DEPLOYMENT as DEPLOYMENT
from prefect_aci.core.names import FLOW_NAME

# How long the demo run may take, the first image pull by the engine included.
RUN_TIMEOUT_SECONDS = 900
# The last log lines may reach the API just after the final state.
LOGS_GRACE_SECONDS = 30

__all__ = ["DEPLOYMENT", "DemoRun", "api_settings", "run"]


@dataclass
class DemoRun:
    flow_run_id: str
    state: str
    state_name: str
    message: str | None
    logs: list[str] = field(default_factory=list)
    # With a standby pool: whether the run's group was claimed from it (the group's GET said so
    # while the run ran), and how many members were ready again afterwards, of how many.
    warm: bool | None = None
    ready_after: tuple[int, int] | None = None


def api_settings(api: str, auth_string: str | None = None) -> dict:
    """Prefect's client settings for the stack's server at ``api``: with its basic-auth string
    when the server asks for one."""
    settings = {PREFECT_API_URL: api}
    if auth_string:
        settings[PREFECT_API_AUTH_STRING] = auth_string
    return settings


# How often a run being followed is read again.
POLL_SECONDS = 0.5


def follow(
    client,
    flow_run: FlowRun,
    timeout: float,
    what: str,
    observe: Callable[[FlowRun], None] | None = None,
) -> FlowRun:
    """``flow_run`` read again every POLL_SECONDS until it is in a final state, which it returns;
    ``observe`` sees it at each read. ``what`` names the run in the error after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (flow_run.state and flow_run.state.is_final()):
        if time.monotonic() > deadline:
            now = flow_run.state.name if flow_run.state else "none"
            raise UserError(
                f"{what} {flow_run.id} did not end within {timeout:g} s (its state: {now}); "
                "`prefect-aci demo status` shows what runs"
            )
        if observe is not None:
            observe(flow_run)
        time.sleep(POLL_SECONDS)
        flow_run = client.read_flow_run(flow_run.id)
    return flow_run


def run(
    api: str,
    parameters: dict | None = None,
    job_variables: dict | None = None,
    auth_string: str | None = None,
    deployment: str = DEPLOYMENT,
    observe: Callable[[FlowRun], None] | None = None,
) -> DemoRun:
    """Run the demo deployment (``deployment``, with ``parameters`` and ``job_variables`` when
    given), wait for its end, and read its logs back from the API. ``observe`` is called with the
    run about every half second until it ends (the group exists only while it runs)."""
    with (
        temporary_settings(updates=api_settings(api, auth_string)),
        get_client(sync_client=True) as client,
    ):
        target = client.read_deployment_by_name(f"{FLOW_NAME}/{deployment}")
        flow_run = client.create_flow_run_from_deployment(
            target.id, parameters=parameters, job_variables=job_variables
        )
        flow_run = follow(client, flow_run, RUN_TIMEOUT_SECONDS, "the demo flow run", observe)
        deadline = time.monotonic() + LOGS_GRACE_SECONDS
        while True:
            logs = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id]))
            )
            messages = [log.message for log in logs]
            if any(m.startswith("Finished in state") for m in messages) or (
                time.monotonic() > deadline
            ):
                break
            time.sleep(1)
    return DemoRun(
        flow_run_id=str(flow_run.id),
        state=flow_run.state.type.value,
        state_name=flow_run.state.name,
        message=flow_run.state.message,
        logs=messages,
    )
