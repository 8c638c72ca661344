"""Tells the Prefect API why a flow run's container stopped before the flow began, so the reason
shows in the run's logs and state (UI, `prefect flow-run logs`), not only in the container's
output, which ACI keeps only until the worker deletes the container group.

Called by entrypoint.sh with the message, already masked; needs PREFECT_API_URL and
PREFECT__FLOW_RUN_ID (the worker sets both). Never fails the caller: it only reports.
"""

import logging
import os
import sys
from datetime import UTC, datetime
from uuid import UUID


def main(message: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import LogCreate
    from prefect.states import Crashed

    flow_run_id = UUID(os.environ["PREFECT__FLOW_RUN_ID"])
    with get_client(sync_client=True) as client:
        client.create_logs(
            [
                LogCreate(
                    name="prefect-aci.entrypoint",
                    level=logging.ERROR,
                    message=message,
                    timestamp=datetime.now(UTC),
                    flow_run_id=flow_run_id,
                )
            ]
        )
        client.set_flow_run_state(flow_run_id, Crashed(message=message))


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except Exception as exc:  # reporting is best effort; the exit code tells the worker anyway
        print(
            f"prefect-aci entrypoint: could not report to the Prefect API: {exc}", file=sys.stderr
        )
