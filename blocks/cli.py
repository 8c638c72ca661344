"""`python -m blocks register [--dry-run]`: the Prefect side, from build/*.json and settings."""

from pathlib import Path
from typing import Annotated

import typer

from blocks.inputs import RegistrationSettings, azure_side, image_in_acr, pushed_image, read_azure
from blocks.register import register
from image_builder.cli_support import command_group, run_cli
from image_builder.settings import BUILD_DIR, IMAGE_RECORD

app = command_group("Register the Prefect side of prefect-aci.")


@app.command("register")
def register_command(
    dry_run: Annotated[bool, typer.Option(help="Say what would be created; write nothing.")] = (
        False
    ),
    image_record: Annotated[Path, typer.Option(help="Pushed image record.")] = IMAGE_RECORD,
    azure_record: Annotated[Path, typer.Option(help="ARM outputs.")] = BUILD_DIR / "azure.json",
) -> None:
    """Credentials block, ACI work pool, flow-code storage blocks and the Key Vault variable."""
    settings = RegistrationSettings()
    image = pushed_image(image_record)
    azure = azure_side(read_azure(azure_record), settings.work_pool_name)
    acr = image.registry if image_in_acr(image) else None
    register(azure, image.reference, acr, settings, dry_run, print)


def main() -> None:
    run_cli(app)
