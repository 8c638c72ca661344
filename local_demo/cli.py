"""`python -m local_demo up|down` (make demo / make demo-down)."""

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from image_builder.cli_support import command_group, console, run_cli
from image_builder.engine import connect
from image_builder.errors import UserError
from image_builder.record import read_record
from image_builder.settings import BUILD_DIR, IMAGE_RECORD, PROJECT_ROOT

DEMO_DIR = BUILD_DIR / "demo"
app = command_group("The whole thing on one machine, no Azure.")


@app.command()
def up(record: Annotated[Path, typer.Option(help="Built image record.")] = IMAGE_RECORD) -> None:
    """Start the stack, deploy the demo flow with its code in Azurite, run it, show the result."""
    from local_demo.stack import up as start

    result = start(connect(), read_record(record), DEMO_DIR, PROJECT_ROOT / "flows", console)
    console.rule(f"flow run {result['flow_run_id']}: {result['state_name']}")
    for line in result["logs"]:
        console.print(escape(line), highlight=False)
    console.print(
        "The stack keeps running (Prefect UI and API on the server's port, see "
        f"{DEMO_DIR / 'state.json'}); make demo-down removes it."
    )
    if result["state"] != "COMPLETED":
        raise UserError(f"the demo flow run ended {result['state_name']}: {result['message']}")


@app.command()
def down() -> None:
    """Remove everything `up` started."""
    from local_demo.stack import down as stop

    stop(connect(), DEMO_DIR, console)


@app.command(hidden=True)
def wire(
    registry_reference: Annotated[str, typer.Option()],
    azurite_port: Annotated[int, typer.Option()],
    flows_dir: Annotated[Path, typer.Option()],
) -> None:
    """Runs in a subprocess with PREFECT_API_URL set to the demo server."""
    from local_demo.wiring import wire as connect_everything

    connect_everything(registry_reference, azurite_port, flows_dir)


@app.command(hidden=True)
def run() -> None:
    from local_demo.wiring import run as run_demo

    print(json.dumps(run_demo()))


def main() -> None:
    run_cli(app)
