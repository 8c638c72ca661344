"""`python -m arm`: validate the template offline; deploy or destroy it with azure-mgmt-resource."""

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from arm.deploy import (
    Infra,
    check_worker_image,
    load_settings,
    load_template,
    parameters,
    write_outputs,
)
from arm.validation import load_schemas, validate_template
from image_builder.acr import default_credential
from image_builder.cli_support import command_group, console, run_cli
from image_builder.errors import UserError
from image_builder.record import read_record
from image_builder.settings import BUILD_DIR, IMAGE_RECORD, PROJECT_ROOT

TEMPLATE = PROJECT_ROOT / "arm" / "azuredeploy.json"
SCHEMAS = PROJECT_ROOT.parent / "shared" / "arm-schemas"
AZURE_RECORD = BUILD_DIR / "azure.json"

app = command_group("The Azure side of prefect-aci.")


@app.command()
def validate(
    template: Annotated[Path, typer.Option(help="Template to check.")] = TEMPLATE,
    schemas: Annotated[
        Path, typer.Option(envvar="ARM_SCHEMAS_DIR", help="Folder of Azure's ARM JSON schemas.")
    ] = SCHEMAS,
) -> None:
    """Validate every resource against Azure's schemas for its apiVersion (offline)."""
    document = load_template(template)
    problems = validate_template(document, load_schemas(schemas))
    for problem in problems:
        console.print(escape(problem), highlight=False)
    if problems:
        raise UserError(f"{len(problems)} schema problem(s) in {template}")
    console.print(
        f"{template.name}: {len(document['resources'])} resources valid against "
        f"Azure's schemas in {schemas}"
    )


@app.command()
def deploy(
    what_if: Annotated[bool, typer.Option(help="Show what would change; deploy nothing.")] = False,
    image_record: Annotated[
        Path, typer.Option(help="Image record whose pinned reference the worker runs.")
    ] = IMAGE_RECORD,
    outputs: Annotated[Path, typer.Option(help="Where to write the deployment outputs.")] = (
        AZURE_RECORD
    ),
    template: Annotated[Path, typer.Option(help="Template to deploy.")] = TEMPLATE,
) -> None:
    """Deploy the Azure side to AZURE_RESOURCE_GROUP (settings from the environment or .env)."""
    settings = load_settings()
    image = read_record(image_record) if image_record.is_file() else None
    document = load_template(template)
    check_worker_image(settings, image)  # before anything is sent
    infra = Infra.connect(settings, default_credential())
    params = parameters(settings, image, infra.deployer)
    infra.ensure_resource_group()
    if what_if:
        for change, resource in infra.what_if(document, params):
            print(f"{change:<10} {resource}")
        return
    console.print(
        f"Deploying {template.name} to resource group {settings.azure_resource_group} "
        "(several minutes)"
    )
    result = infra.deploy(document, params)
    write_outputs(outputs, result)
    console.print(f"[bold green]Deployed[/]; outputs in {outputs}")


@app.command()
def destroy(
    yes: Annotated[bool, typer.Option("--yes", help="Really delete the resource group.")] = False,
    outputs: Annotated[Path, typer.Option(help="Deployment outputs to read the vault from.")] = (
        AZURE_RECORD
    ),
) -> None:
    """Delete AZURE_RESOURCE_GROUP and everything in it (asks for --yes)."""
    settings = load_settings(prefect_api_url="http://unused", prefect_api_key="unused")
    if not yes:
        raise UserError(
            f"this deletes resource group {settings.azure_resource_group} and all "
            "in it; run again with --yes (make destroy CONFIRM=yes)"
        )
    recorded = json.loads(outputs.read_text()) if outputs.is_file() else {}
    vault = recorded.get("keyVaultName") or settings.key_vault_name or "its Key Vault"
    Infra.connect(settings, default_credential()).destroy()
    outputs.unlink(missing_ok=True)
    console.print(
        f"Deleted resource group {settings.azure_resource_group}. Key Vault {vault} is now "
        "soft-deleted, not gone: its name stays taken until the retention period ends (90 days "
        "by default). To deploy again under the same name, recover it (`az keyvault recover "
        f"--name {vault}`) or purge it (`az keyvault purge --name {vault}`); with purge "
        "protection on it cannot be purged, so set KEY_VAULT_NAME to a new name instead."
    )


def main() -> None:
    run_cli(app)
