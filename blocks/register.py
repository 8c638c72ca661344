"""Create or update the Prefect side, idempotently: each step says created, updated or unchanged."""

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field

from prefect import get_client
from prefect.blocks.core import Block
from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound, ScriptError
from prefect.flows import Flow
from prefect.schedules import Interval
from prefect.settings import PREFECT_API_KEY, PREFECT_API_URL
from prefect.variables import Variable
from prefect_azure import (
    AzureBlobStorageContainer,
    AzureBlobStorageCredentials,
    AzureContainerInstanceCredentials,
)

from blocks.automation import save_automation, zombie_automation
from blocks.inputs import RegistrationSettings
from blocks.work_pool import base_job_template
from prefect_aci.core.azure import is_acr
from prefect_aci.core.errors import UserError
from prefect_aci.core.names import (
    ACI_CREDENTIALS_BLOCK,
    FLOW_CODE_BLOCK,
    KEY_VAULT_VARIABLE,
    STANDBY_POOL_SUFFIX,
    STANDBY_WORK_POOL_TYPE,
    SWEEP_CODE_BLOCK,
    SWEEP_DEPLOYMENT,
    SWEEP_ENTRYPOINT,
    SWEEP_FLOW_NAME,
    SWEEP_FOLDER,
    WORK_POOL_TYPE,
)
from prefect_aci.core.prefect_api import prefect_api_errors, prefect_api_refusal
from prefect_aci.core.records import AzureRecord, PublishedImage
from prefect_aci.core.settings import duration


@dataclass
class Report:
    work_pool_name: str
    dry_run: bool = False
    lines: list[str] = field(default_factory=list)

    def add(self, what: str, outcome: str) -> None:
        if self.dry_run and outcome != "unchanged":
            outcome = f"would-{outcome.removesuffix('d')}"
        self.lines.append(f"{outcome:<12} {what}")


def aci_credentials(settings: RegistrationSettings) -> AzureContainerInstanceCredentials:
    """The worker's own service principal when all three PREFECT_ACI_WORKER_* are set (never the
    one signed in here, which deploys); else the worker's managed identity."""
    given = [settings.worker_tenant_id, settings.worker_client_id, settings.worker_client_secret]
    if all(given):
        signed_in = (settings.signed_in_client_id or "").strip().lower()
        if signed_in and signed_in == str(settings.worker_client_id).strip().lower():
            raise UserError(
                "PREFECT_ACI_WORKER_CLIENT_ID is the service principal signed in here "
                "(AZURE_CLIENT_ID), which deploys and may hold Owner; give the worker a principal "
                "of its own with the worker roles (arm/prefect-aci-role.json, "
                "arm/prefect-aci-linked-role.json), or unset PREFECT_ACI_WORKER_* to use the "
                "worker's managed identity"
            )
        return AzureContainerInstanceCredentials(
            tenant_id=settings.worker_tenant_id,
            client_id=settings.worker_client_id,
            client_secret=settings.worker_client_secret,
        )
    if any(given):
        raise UserError(
            "set all of PREFECT_ACI_WORKER_TENANT_ID, PREFECT_ACI_WORKER_CLIENT_ID and "
            "PREFECT_ACI_WORKER_CLIENT_SECRET for the worker's service principal, or none to use "
            "the worker's managed identity"
        )
    return AzureContainerInstanceCredentials()


def _comparable(block: Block) -> dict:
    """Public fields with secrets revealed: a loaded block also carries private bookkeeping."""
    return {
        key: (value.get_secret_value() if hasattr(value, "get_secret_value") else value)
        for key, value in block.model_dump().items()
        if not key.startswith("_")
    }


def _save_block(block: Block, name: str, report: Report, dry_run: bool) -> str | None:
    kind = type(block).__name__
    try:
        existing = type(block).load(name)
    except ValueError:
        existing = None
    if existing is not None and _comparable(existing) == _comparable(block):
        report.add(f"{kind} block {name!r}", "unchanged")
        return str(existing._block_document_id)
    report.add(
        f"{kind} block {name!r}",
        "updated" if existing is not None else "created",
    )
    if dry_run:
        return str(existing._block_document_id) if existing is not None else None
    return str(block.save(name, overwrite=True))


def check_pool_type(pool_name: str, pool_type: str = WORK_POOL_TYPE) -> dict | None:
    """The existing pool's template, or None; a UserError if it is of another type."""
    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(pool_name)
        except ObjectNotFound:
            return None
    if pool.type != pool_type:
        raise UserError(
            f"work pool {pool_name} exists with type {pool.type}, not "
            f"{pool_type}; delete it (prefect work-pool delete {pool_name}) or "
            "set PREFECT_ACI_WORK_POOL_NAME to another name"
        )
    return pool.base_job_template


def register(
    azure: AzureRecord,
    image: PublishedImage,
    settings: RegistrationSettings,
    *,
    dry_run: bool = False,
    echo: Callable[[str], None] = print,
) -> Report:
    """Create or update the Prefect side for ``azure``'s resources and the pushed ``image``;
    each step's outcome goes to ``echo``. The pool is the recorded one unless the settings name
    another; the registry credential is the job identity's when the image is in ACR."""
    api = PREFECT_API_URL.value() or ""
    has_key = bool(PREFECT_API_KEY.value())
    refusal = prefect_api_refusal(api, settings.allow_http_api_url, has_key, "register")
    if refusal:
        raise UserError(refusal)
    if settings.work_pool_name:
        azure = azure.model_copy(update={"work_pool_name": settings.work_pool_name})
    report = Report(azure.work_pool_name, dry_run=dry_run)
    registry = image.published.registry
    acr_login_server = registry if is_acr(registry) else None
    with prefect_api_errors():
        # The plain pool, and with the template's standby pool the pool whose worker claims.
        pools = [(azure.work_pool_name, WORK_POOL_TYPE, False)]
        if azure.standby_pool_id:
            pools.append((standby_pool_name(azure), STANDBY_WORK_POOL_TYPE, True))
        existing = {name: check_pool_type(name, pool_type) for name, pool_type, _ in pools}
        credentials_id = _save_block(
            aci_credentials(settings), ACI_CREDENTIALS_BLOCK, report, dry_run
        )
        storage = AzureBlobStorageContainer(
            container_name=azure.flow_code_container_name,
            credentials=AzureBlobStorageCredentials(account_url=azure.blob_endpoint),
        )
        _save_block(storage, FLOW_CODE_BLOCK, report, dry_run)
        for name, pool_type, standby in pools:
            template = base_job_template(
                azure,
                image.reference,
                credentials_id or f"<id of block {ACI_CREDENTIALS_BLOCK}>",
                acr_login_server,
                settings.pool_env,
                settings.heartbeat_seconds,
                standby=standby,
            )
            _save_pool(name, template, existing[name], report, dry_run, pool_type)
            save_heartbeat_automation(name, settings.window_seconds, report, dry_run)
        _save_variable(azure.key_vault_uri, report, dry_run)
        if settings.sweep_every:
            save_sweep_deployment(azure, storage, settings, report, dry_run)
    for line in report.lines:
        echo(line)
    return report


def standby_pool_name(azure: AzureRecord) -> str:
    """The work pool of the standby pool's worker: the template's name for it, which follows the
    plain pool's (`<pool>-standby`)."""
    return azure.standby_work_pool_name or f"{azure.work_pool_name}{STANDBY_POOL_SUFFIX}"


def _save_pool(
    name: str,
    template: dict,
    existing: dict | None,
    report: Report,
    dry_run: bool,
    pool_type: str = WORK_POOL_TYPE,
) -> None:
    what = f"work pool {name!r} ({pool_type})"
    if existing == template:
        report.add(what, "unchanged")
        return
    if dry_run:
        report.add(what, "updated" if existing else "created")
        return
    with get_client(sync_client=True) as client:
        if existing is None:
            try:
                client.create_work_pool(
                    WorkPoolCreate(name=name, type=pool_type, base_job_template=template)
                )
                report.add(what, "created")
                return
            except ObjectAlreadyExists:
                # Made since the check: `prefect worker start --pool` makes its pool when it is
                # missing, and deploy-all starts the workers in ACI before it registers. Such a
                # pool holds the worker type's default template, which ours replaces.
                check_pool_type(name, pool_type)
        client.update_work_pool(name, WorkPoolUpdate(base_job_template=template))
    report.add(what, "updated")


def save_heartbeat_automation(
    pool_name: str, window_seconds: int, report: Report, dry_run: bool
) -> None:
    """Prefect's zombie-run automation for this pool's runs (blocks/automation.py); it names the
    pool by id, which a dry run for a new pool does not know yet."""
    with get_client(sync_client=True) as client:
        try:
            pool_id = str(client.read_work_pool(pool_name).id)
        except ObjectNotFound:
            pool_id = f"<id of work pool {pool_name}>"
    automation = zombie_automation(pool_name, pool_id, window_seconds)
    report.add(f"automation {automation.name!r}", save_automation(automation, dry_run))


def _save_variable(value: str, report: Report, dry_run: bool) -> None:
    what = f"variable {KEY_VAULT_VARIABLE!r}"
    current = Variable.get(KEY_VAULT_VARIABLE, default=None)
    if current == value:
        report.add(what, "unchanged")
        return
    report.add(what, "updated" if current else "created")
    if not dry_run:
        Variable.set(KEY_VAULT_VARIABLE, value, overwrite=True)


def sweep_parameters(azure: AzureRecord, settings: RegistrationSettings) -> dict:
    """What the sweep flow (arm/sweep_flow.py) is told: the settings `prefect-aci azure sweep`
    would read here, but for the Prefect API's, which the worker gives each flow run."""
    return {
        "subscription_id": azure.subscription_id,
        "resource_group": azure.resource_group,
        "work_pool_name": azure.work_pool_name,
        "prefix": settings.prefix,
        "allow_http_api_url": settings.allow_http_api_url,
    }


def save_sweep_deployment(
    azure: AzureRecord,
    flow_code: AzureBlobStorageContainer,
    settings: RegistrationSettings,
    report: Report,
    dry_run: bool,
) -> None:
    """The sweep as a deployment on the pool, every PREFECT_ACI_SWEEP_EVERY, its first run one
    interval from now. Its code is what deploy-all uploaded to SWEEP_FOLDER/ of the flow-code
    container, pulled through a block of that folder alone."""
    every = duration(settings.sweep_every or "")
    code = flow_code.model_copy(update={"base_folder": SWEEP_FOLDER})
    _save_block(code, SWEEP_CODE_BLOCK, report, dry_run)
    parameters = sweep_parameters(azure, settings)
    what = f"deployment '{SWEEP_FLOW_NAME}/{SWEEP_DEPLOYMENT}' (every {settings.sweep_every})"
    with get_client(sync_client=True) as client:
        try:
            existing = client.read_deployment_by_name(f"{SWEEP_FLOW_NAME}/{SWEEP_DEPLOYMENT}")
        except ObjectNotFound:
            existing = None
    if existing is not None and (
        existing.parameters == parameters
        and existing.work_pool_name == azure.work_pool_name
        and existing.entrypoint == SWEEP_ENTRYPOINT
        and [getattr(s.schedule, "interval", None) for s in existing.schedules] == [every]
        and all(s.active for s in existing.schedules)
    ):
        report.add(what, "unchanged")
        return
    report.add(what, "updated" if existing is not None else "created")
    if dry_run:
        return
    try:
        flow = Flow.from_source(
            source=AzureBlobStorageContainer.load(SWEEP_CODE_BLOCK), entrypoint=SWEEP_ENTRYPOINT
        )
    except (ScriptError, FileNotFoundError, OSError) as exc:
        raise UserError(
            f"the sweep's code is not in {azure.blob_endpoint}/{azure.flow_code_container_name}/"
            f"{SWEEP_FOLDER} ({type(exc).__name__}); `make deploy-all` uploads it, or unset "
            "PREFECT_ACI_SWEEP_EVERY"
        ) from None
    first = datetime.datetime.now(datetime.UTC) + every
    flow.deploy(
        name=SWEEP_DEPLOYMENT,
        work_pool_name=azure.work_pool_name,
        parameters=parameters,
        schedules=[Interval(every, anchor_date=first)],
        build=False,
        push=False,
        print_next_steps=False,
    )
