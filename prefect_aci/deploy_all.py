"""`prefect-aci deploy-all` (make deploy-all): from an empty resource group to the demo flow
deployed on ACI.

The order is what the pieces need: the registry exists before the image is pushed into it, the
worker needs the pushed digest, the work pool needs the ARM outputs and the digest, the flow
deployment needs the storage block and the pool. One Azure credential (yours: az login, a service
principal, or a managed identity) does all of it; the template grants it what it needs (Storage
Blob Data Contributor on the flow-code container, AcrPush on the registry)."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from azure.core.credentials import TokenCredential
from azure.core.pipeline.transport import HttpTransport
from azure.storage.blob import ContainerClient
from prefect.settings import temporary_settings
from rich.console import Console

from arm.deploy import Infra, parameters
from arm.settings import InfraSettings
from arm.sweep_flow import sweep_files
from blocks.inputs import RegistrationSettings
from blocks.register import register, standby_pool_name
from flows.deployment import deploy_demo, upload_flow_code
from image_builder.push import publish
from prefect_aci.core.azure import default_credential
from prefect_aci.core.console import Step, console
from prefect_aci.core.errors import UserError
from prefect_aci.core.names import (
    DEMO_DEPLOYMENT,
    DEMO_STANDBY_DEPLOYMENT,
    FLOW_CODE_BLOCK,
    FLOW_NAME,
    SWEEP_FOLDER,
)
from prefect_aci.core.paths import PROJECT_ROOT
from prefect_aci.core.prefect_api import client_settings
from prefect_aci.core.records import AzureRecord, ImageRecord, published, read_record, write_record
from prefect_aci.core.settings import load

DEPLOYMENT = DEMO_DEPLOYMENT
# Storage can take minutes to honour a role assignment ARM has just made.
ROLE_PROPAGATION_SECONDS = 600
NO_AZURE = (
    "no Azure settings: set AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, AZURE_LOCATION, "
    "PREFECT_API_URL and PREFECT_API_KEY in .env (docs/azure.md) to deploy to Azure; to run "
    "the whole thing on this machine with no Azure account, run `make demo`"
)


@dataclass
class Result:
    azure: AzureRecord
    reference: str


def deploy_all(
    settings: InfraSettings,
    credential: TokenCredential,
    template: dict,
    image_record: Path,
    azure_record: Path,
    console: Console,
    arm_transport: HttpTransport | None = None,
) -> Result:
    step = Step(console)
    image: ImageRecord = read_record(image_record)
    if not settings.deploy_registry and image.published is None:
        raise UserError(
            "PREFECT_ACI_DEPLOY_REGISTRY=false: push the image to a registry ACI can pull from "
            "first (make push REGISTRY=...), then run make deploy-all again"
        )
    infra = Infra.connect(settings, credential, arm_transport)
    if infra.deployer is None:
        console.print(
            "[yellow]warning:[/] your Azure token names no object id, so no roles are granted "
            "to you; uploading flow code needs Storage Blob Data Contributor on its container"
        )
    step(f"resource group {settings.azure_resource_group}", infra.ensure_resource_group)

    def arm_deploy(with_worker: bool) -> AzureRecord:
        phase = settings.model_copy(update={"deploy_worker": with_worker})
        azure = infra.deploy(template, parameters(phase, image, infra.deployer))
        write_record(azure_record, azure)
        return azure

    azure = step(
        "ARM: network, identities, Key Vault, registry, storage (several minutes)",
        lambda: arm_deploy(with_worker=False),
    )
    if settings.deploy_registry:
        registry = azure.registry_login_server
        if not registry:
            raise UserError("the deployment reported no registryLoginServer; deploy again")
        image = step(
            f"push the image to {registry}",
            lambda: publish(image_record, registry, credential=credential, console=console),
        )
    pushed = published(image, image_record)
    if settings.deploy_worker:
        azure = step(
            "ARM: the worker in ACI, running the pushed image",
            lambda: arm_deploy(with_worker=True),
        )

    registration = load(RegistrationSettings)
    if settings.deploy_worker:
        registration = registration.with_managed_identity()
    container = ContainerClient(
        account_url=azure.blob_endpoint,
        container_name=azure.flow_code_container_name,
        credential=credential,
    )
    # Before register: the sweep's deployment (PREFECT_ACI_SWEEP_EVERY) is made from its code.
    step(
        f"upload the flow code to {azure.blob_endpoint}/{azure.flow_code_container_name}",
        lambda: upload_flow_code(
            container,
            more=sweep_code() if registration.sweep_every else None,
            wait_for_access=ROLE_PROPAGATION_SECONDS,
            echo=_indented(console),
        ),
    )
    api = client_settings(
        settings.prefect_api_url, settings.prefect_api_key, settings.prefect_api_auth_string
    )
    with temporary_settings(updates=api):
        report = step(
            "Prefect: credentials block, ACI work pool, storage block, Key Vault variable"
            + (", the scheduled sweep" if registration.sweep_every else ""),
            lambda: register(azure, pushed, registration, echo=_indented(console)),
        )
        azure = azure.model_copy(update={"work_pool_name": report.work_pool_name})
        step(
            f"deploy {FLOW_NAME}/{DEPLOYMENT} to work pool {azure.work_pool_name}",
            lambda: deploy_demo(FLOW_CODE_BLOCK, azure.work_pool_name, DEPLOYMENT),
        )
        if azure.standby_pool_id:
            warm = standby_pool_name(azure)
            step(
                f"deploy {FLOW_NAME}/{DEMO_STANDBY_DEPLOYMENT} to work pool {warm} (warm starts)",
                lambda: deploy_demo(FLOW_CODE_BLOCK, warm, DEMO_STANDBY_DEPLOYMENT),
            )
    return Result(azure, pushed.reference)


def sweep_code() -> dict[str, Path]:
    """The sweep flow's files (arm/sweep_flow.py SWEEP_FILES) as blobs under SWEEP_FOLDER/."""
    return {
        f"{SWEEP_FOLDER}/{path.relative_to(PROJECT_ROOT).as_posix()}": path
        for path in sweep_files(PROJECT_ROOT)
    }


def next_steps(result: Result, settings: InfraSettings) -> str:
    pool = result.azure.work_pool_name
    worker = (
        f"The worker ({settings.prefix}-worker in ACI) polls work pool {pool}; each flow run "
        "gets its own container group."
        if settings.deploy_worker
        else f"Start a worker for work pool {pool} (prefect worker start --pool {pool})."
    )
    warm = []
    if result.azure.standby_pool_id:
        standby = standby_pool_name(result.azure)
        warm = [
            f"Warm starts: work pool {standby} claims each run's group from the standby pool "
            f"({settings.prefix}-standby-worker polls it); deployed {FLOW_NAME}/"
            f"{DEMO_STANDBY_DEPLOYMENT} on it."
        ]
    return "\n".join(
        [
            f"Deployed {FLOW_NAME}/{DEPLOYMENT}, image {result.reference}.",
            worker,
            *warm,
            "Next:",
            f"  prefect deployment run '{FLOW_NAME}/{DEPLOYMENT}' --watch",
            "      (with PREFECT_API_URL and PREFECT_API_KEY set as in .env; the first run pulls",
            "      the image into ACI, about a minute)",
            "  make destroy CONFIRM=yes      when you are done (deletes the resource group)",
        ]
    )


def _indented(console: Console) -> Callable[[str], None]:
    return lambda line: console.print(f"  {line}", highlight=False)


def execute(
    settings: InfraSettings,
    template: dict,
    image_record: Path,
    azure_record: Path,
    arm_transport: HttpTransport | None = None,
) -> None:
    """The deployment once the image is built; ``arm_transport`` is the one seam tests use (a
    local ARM stand-in)."""
    result = deploy_all(
        settings,
        default_credential(),
        template,
        image_record,
        azure_record,
        console,
        arm_transport=arm_transport,
    )
    console.print(f"[bold green]Done.[/] ARM outputs in {azure_record}")
    print(next_steps(result, settings))
