"""`python -m arm`: validate the template offline; deploy or destroy it with azure-mgmt-resource."""

import json
import logging
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from arm.validation import load_schemas, validate_template
from image_builder.errors import UserError
from image_builder.settings import PROJECT_ROOT

TEMPLATE = PROJECT_ROOT / "arm" / "azuredeploy.json"
SCHEMAS = PROJECT_ROOT.parent / "shared" / "arm-schemas"

app = typer.Typer(
    help="The Azure side of prefect-aci.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True, soft_wrap=True)


@app.callback()
def _group() -> None:
    """The Azure side of prefect-aci: validate, deploy, destroy."""


@app.command()
def validate(
    template: Annotated[Path, typer.Option(help="Template to check.")] = TEMPLATE,
    schemas: Annotated[
        Path, typer.Option(envvar="ARM_SCHEMAS_DIR", help="Folder of Azure's ARM JSON schemas.")
    ] = SCHEMAS,
) -> None:
    """Validate every resource against Azure's schemas for its apiVersion (offline)."""
    try:
        document = json.loads(template.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {template} as strict JSON ({exc})") from None
    problems = validate_template(document, load_schemas(schemas))
    for problem in problems:
        console.print(escape(problem), highlight=False)
    if problems:
        raise UserError(f"{len(problems)} schema problem(s) in {template}")
    console.print(
        f"{template.name}: {len(document['resources'])} resources valid against "
        f"Azure's schemas in {schemas}"
    )


def main() -> None:
    if not os.environ.get("PREFECT_ACI_DEBUG"):
        logging.getLogger("azure").setLevel(logging.CRITICAL)
    try:
        app()
    except UserError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        raise SystemExit(exc.exit_code) from None
