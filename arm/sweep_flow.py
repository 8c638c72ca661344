"""`prefect-aci azure sweep` as a Prefect flow, for the scheduled deployment on the ACI pool that
`prefect-aci register` makes when PREFECT_ACI_SWEEP_EVERY is set.

It runs in a flow-run container group of the pool like any flow, as the job identity, which holds
the sweeper role (the template's, with scheduledSweep: arm/sweep.py SWEEP_ACTIONS and nothing
more). Its code is the sweep's own: deploy-all uploads this file, the `arm` modules it imports and
`prefect_aci/core` to the flow-code container under SWEEP_FOLDER/ (SWEEP_FILES), and the
deployment pulls them through a storage block of that folder alone; the image already has every
package they import.

What the sweep reads from the environment on a laptop comes from the deployment's parameters
here, but for the Prefect API's address and credential, which the worker gives every flow run.
"""

from pathlib import Path

from prefect import flow, get_run_logger

from arm.settings import SweepSettings
from arm.sweep import parse_duration, summary
from arm.sweep import sweep as sweep_group
from prefect_aci.core.azure import default_credential
from prefect_aci.core.names import SWEEP_FLOW_NAME
from prefect_aci.core.settings import load

# What the flow imports, relative to the project root: uploaded as they are.
SWEEP_FILES = (
    "arm/__init__.py",
    "arm/deploy.py",
    "arm/settings.py",
    "arm/sweep.py",
    "arm/sweep_flow.py",
    "prefect_aci/__init__.py",
    "prefect_aci/core/*.py",
)


def sweep_files(root: Path) -> list[Path]:
    """The files SWEEP_FILES names under ``root``, in order."""
    return [path for pattern in SWEEP_FILES for path in sorted(root.glob(pattern))]


@flow(name=SWEEP_FLOW_NAME)
def sweep(
    subscription_id: str,
    resource_group: str,
    work_pool_name: str,
    prefix: str,
    older_than: str = "1d",
    dry_run: bool = False,
    allow_http_api_url: bool = False,
) -> str:
    """Reconcile the pool's flow runs whose container group ended unreported (Crashed, with the
    container's last log lines), then delete finished groups and old flow-run deployments, as
    `prefect-aci azure sweep --older-than OLDER_THAN` does. Fails, after doing what it could,
    when a deletion or a state change failed."""
    logger = get_run_logger()
    age = parse_duration(older_than)
    settings = load(
        SweepSettings,
        azure_subscription_id=subscription_id,
        azure_resource_group=resource_group,
        work_pool_name=work_pool_name,
        prefix=prefix,
        allow_http_api_url=allow_http_api_url,
    )
    logger.info(
        "Sweeping resource group %s%s",
        resource_group,
        " (dry run: nothing is changed or deleted)" if dry_run else "",
    )
    verdicts = sweep_group(settings, default_credential(), age, dry_run, logger.info)
    result = summary(verdicts, dry_run)
    logger.info(result)
    return result
