"""`python -m deploy_all run` (make deploy-all)."""

from pathlib import Path
from typing import Annotated

import typer
from azure.core.pipeline.transport import HttpTransport

from arm.cli import AZURE_RECORD, TEMPLATE
from arm.deploy import load_settings, load_template
from deploy_all.steps import NO_AZURE, deploy_all, next_steps
from image_builder.acr import default_credential
from image_builder.cli_support import command_group, console, run_cli
from image_builder.settings import IMAGE_RECORD

app = command_group("From nothing to the demo flow deployed on Azure Container Instances.")


@app.command()
def check() -> None:
    """Stop at once, with what to do, when the Azure settings are missing or malformed."""
    settings = load_settings(when_unconfigured=NO_AZURE)
    console.print(
        f"Azure settings: subscription {settings.azure_subscription_id}, resource group "
        f"{settings.azure_resource_group}, Prefect API {settings.prefect_api_url}"
    )


@app.command()
def run(
    image_record: Annotated[Path, typer.Option(help="Built image record (make image).")] = (
        IMAGE_RECORD
    ),
    azure_record: Annotated[Path, typer.Option(help="Where to write the ARM outputs.")] = (
        AZURE_RECORD
    ),
    template: Annotated[Path, typer.Option(help="ARM template to deploy.")] = TEMPLATE,
) -> None:
    """Deploy the ARM template, push the image, deploy the worker, register the Prefect side,
    upload the flow code and deploy the demo flow (settings from the environment or .env)."""
    execute(image_record, azure_record, template)


def execute(
    image_record: Path,
    azure_record: Path,
    template: Path,
    arm_transport: HttpTransport | None = None,
) -> None:
    """The whole command; ``arm_transport`` is the one seam tests use (a local ARM stand-in)."""
    settings = load_settings(when_unconfigured=NO_AZURE)
    document = load_template(template)
    result = deploy_all(
        settings,
        default_credential(),
        document,
        image_record,
        azure_record,
        console,
        arm_transport=arm_transport,
    )
    console.print(f"[bold green]Done.[/] ARM outputs in {azure_record}")
    print(next_steps(result, settings))


def main() -> None:
    run_cli(app)
