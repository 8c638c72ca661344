"""The `prefect-aci` command: one root, a group per topic, the way Prefect's own CLI is built."""

from typing import Annotated

import typer

from arm.cli import app as azure_app
from blocks.cli import register_command
from image_builder.cli import acr_app
from image_builder.cli import app as image_app
from image_builder.cli import bench as image_bench
from prefect_aci.core.console import run_cli
from prefect_aci.demo.cli import app as demo_app
from prefect_aci.demo.cli import bench as demo_bench
from prefect_aci.deploy_all import deploy_all_command
from prefect_aci.dev import app as dev_app

app = typer.Typer(
    name="prefect-aci",
    help="Run Prefect 3 flows on Azure Container Instances: build and publish the image, deploy "
    "the Azure side, register the Prefect side, or run it all locally with no Azure account. "
    "Settings come from options, the environment or .env; PREFECT_ACI_DEBUG=1 keeps the Azure "
    "SDKs' own logs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.add_typer(image_app, name="image")
app.add_typer(acr_app, name="acr")
app.add_typer(azure_app, name="azure")
app.command("register")(register_command)
app.command("deploy-all")(deploy_all_command)
app.add_typer(demo_app, name="demo")
app.add_typer(dev_app, name="dev")


@app.command("bench")
def bench(
    runs: Annotated[
        int, typer.Option(min=1, max=20, help="Runs per figure (median), for both parts.")
    ] = 5,
) -> None:
    """Everything `make bench` reports: the image against the usual one-stage recipe (`image
    bench`: sizes, builds, starts, pulls, pushes), then flow runs through the ACI worker on local
    ACI (`demo bench`: one at a time, and a burst). Settings: those of the two commands."""
    image_bench(runs=runs)
    demo_bench(runs=runs)


def main() -> None:
    run_cli(app)
