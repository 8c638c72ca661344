"""`make deploy-all`: from an empty resource group to the demo flow deployed on ACI.

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
from prefect.settings import PREFECT_API_KEY, PREFECT_API_URL, temporary_settings
from rich.console import Console

from arm.deploy import Infra, InfraSettings, parameters, write_outputs
from blocks.inputs import RegistrationSettings, azure_side, image_in_acr, read_azure
from blocks.register import STORAGE_CONTAINER_BLOCK, register
from flows.deployment import FLOW_NAME, deploy_demo, upload_flow_code
from image_builder.cli_support import Step
from image_builder.errors import UserError
from image_builder.push import publish
from image_builder.record import read_record

DEPLOYMENT = "aci"
# Storage can take minutes to honour a role assignment ARM has just made.
ROLE_PROPAGATION_SECONDS = 600
NO_AZURE = (
    "no Azure settings: set AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, AZURE_LOCATION, "
    "PREFECT_API_URL and PREFECT_API_KEY in .env (README: Azure) to deploy to Azure; to run "
    "the whole thing on this machine with no Azure account, run `make demo`"
)


@dataclass
class Result:
    outputs: dict
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
    image = read_record(image_record)
    if not settings.deploy_registry and not (image.reference and "@sha256:" in image.reference):
        raise UserError(
            "DEPLOY_REGISTRY=false: push the image to a registry ACI can pull from first "
            "(make push REGISTRY=...), then run make deploy-all again"
        )
    infra = Infra.connect(settings, credential, arm_transport)
    if infra.deployer is None:
        console.print(
            "[yellow]warning:[/] your Azure token names no object id, so no roles are granted "
            "to you; uploading flow code needs Storage Blob Data Contributor on its container"
        )
    step(f"resource group {settings.azure_resource_group}", infra.ensure_resource_group)

    def arm_deploy(with_worker: bool) -> dict:
        phase = settings.model_copy(update={"deploy_worker": with_worker})
        outputs = infra.deploy(template, parameters(phase, image, infra.deployer))
        write_outputs(azure_record, outputs)
        return outputs

    outputs = step(
        "ARM: network, identities, Key Vault, registry, storage (several minutes)",
        lambda: arm_deploy(with_worker=False),
    )
    if settings.deploy_registry:
        registry = outputs.get("registryLoginServer")
        if not registry:
            raise UserError("the deployment reported no registryLoginServer; deploy again")
        image = step(
            f"push the image to {registry}",
            lambda: publish(image_record, registry, credential=credential, console=console),
        )
    reference = image.reference
    if settings.deploy_worker:
        outputs = step(
            "ARM: the worker in ACI, running the pushed image",
            lambda: arm_deploy(with_worker=True),
        )

    registration = RegistrationSettings()
    if settings.deploy_worker:
        # The AZURE_* variables here log *you* in; the worker in ACI uses its own managed identity
        # (a least-privilege role), never your service principal's secret.
        registration = registration.model_copy(
            update={"azure_tenant_id": None, "azure_client_id": None, "azure_client_secret": None}
        )
    azure = azure_side(read_azure(azure_record), registration.work_pool_name)
    acr = image.registry if image_in_acr(image) else None
    api = {
        PREFECT_API_URL: settings.prefect_api_url,
        PREFECT_API_KEY: settings.prefect_api_key.get_secret_value(),
    }
    with temporary_settings(updates=api):
        step(
            "Prefect: credentials block, ACI work pool, storage block, Key Vault variable",
            lambda: register(azure, reference, acr, registration, False, _indented(console)),
        )
        container = ContainerClient(
            account_url=azure.blob_endpoint,
            container_name=azure.flow_code_container,
            credential=credential,
        )
        step(
            f"upload the flow code to {azure.blob_endpoint}/{azure.flow_code_container}",
            lambda: upload_flow_code(
                container,
                wait_for_access=ROLE_PROPAGATION_SECONDS,
                echo=_indented(console),
            ),
        )
        step(
            f"deploy {FLOW_NAME}/{DEPLOYMENT} to work pool {azure.work_pool}",
            lambda: deploy_demo(STORAGE_CONTAINER_BLOCK, azure.work_pool, DEPLOYMENT),
        )
    return Result(outputs, reference)


def next_steps(result: Result, settings: InfraSettings) -> str:
    worker = (
        f"The worker ({settings.prefix}-worker in ACI) polls work pool "
        f"{result.outputs.get('workPoolName')}; each flow run gets its own container group."
        if settings.deploy_worker
        else f"Start a worker for work pool {result.outputs.get('workPoolName')} "
        f"(prefect worker start --pool {result.outputs.get('workPoolName')})."
    )
    return "\n".join(
        [
            f"Deployed {FLOW_NAME}/{DEPLOYMENT}, image {result.reference}.",
            worker,
            "Next:",
            f"  prefect deployment run '{FLOW_NAME}/{DEPLOYMENT}' --watch",
            "      (with PREFECT_API_URL and PREFECT_API_KEY set as in .env; the first run pulls",
            "      the image into ACI, about a minute)",
            "  make destroy CONFIRM=yes      when you are done (deletes the resource group)",
        ]
    )


def _indented(console: Console) -> Callable[[str], None]:
    return lambda line: console.print(f"  {line}", highlight=False)
