"""`prefect-aci deploy-all` (make deploy-all): the whole Azure path in order."""

from pathlib import Path
from typing import Annotated

import typer

from arm.deploy import TEMPLATE, load_template
from arm.settings import InfraSettings
from image_builder.api import BuildOptions, build
from prefect_aci.core.console import console
from prefect_aci.core.paths import AZURE_RECORD, IMAGE_RECORD
from prefect_aci.core.settings import load
from prefect_aci.deploy_all import NO_AZURE, execute


def deploy_all_command(
    build_first: Annotated[
        bool,
        typer.Option(
            "--build/--no-build",
            help="Build the image first; --no-build uses build/image.json as it is.",
        ),
    ] = True,
    image_record: Annotated[Path, typer.Option(help="The image record.")] = IMAGE_RECORD,
    azure_record: Annotated[Path, typer.Option(help="Where to write the ARM outputs.")] = (
        AZURE_RECORD
    ),
    template: Annotated[Path, typer.Option(help="ARM template to deploy.")] = TEMPLATE,
) -> None:
    """From an empty resource group to the demo flow deployed on ACI: ARM (network, identities,
    Key Vault, registry, storage), image build and push, the worker in ACI, the Prefect side, the
    flow code in Blob storage, and the demo deployment. Rerunnable.

    Settings (environment or .env), checked before anything is built: AZURE_SUBSCRIPTION_ID,
    AZURE_RESOURCE_GROUP, AZURE_LOCATION, PREFECT_API_URL, PREFECT_API_KEY (Prefect Cloud) or
    PREFECT_API_AUTH_STRING (a self-hosted server), the optional ones of `prefect-aci azure
    deploy` and of `prefect-aci register` (PREFECT_ACI_POOL_ENV, PREFECT_ACI_HEARTBEAT_*). Signs
    in with DefaultAzureCredential.
    """
    settings = load(InfraSettings, when_unconfigured=NO_AZURE)
    console.print(
        f"Azure settings: subscription {settings.azure_subscription_id}, resource group "
        f"{settings.azure_resource_group}, Prefect API {settings.prefect_api_url}"
    )
    document = load_template(template)
    if build_first:
        build(BuildOptions(offline_fallback=True), image_record, console)
    execute(settings, document, image_record, azure_record)
