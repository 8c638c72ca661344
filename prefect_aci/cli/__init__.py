"""The `prefect-aci` command: one root, a module per topic, the way Prefect's own CLI is built.

This package is the top floor: nothing else imports it (import-linter checks that). Commands parse
options and print; the work is in the stages' and orchestration's plain functions."""

from typing import Annotated

import typer

from prefect_aci.cli import azure, demo, dev, image
from prefect_aci.cli.common import run_cli
from prefect_aci.cli.deploy_all import deploy_all_command
from prefect_aci.cli.register import register_command
from prefect_aci.core.console import console

app = typer.Typer(
    name="prefect-aci",
    help="Run Prefect 3 flows on Azure Container Instances: build and publish the image, deploy "
    "the Azure side, register the Prefect side, or run it all locally with no Azure account. "
    "Settings come from options, the environment or .env (product settings start with "
    "PREFECT_ACI_; see .env.example); PREFECT_ACI_DEBUG=1 keeps the Azure SDKs' own logs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.add_typer(image.app, name="image")
app.add_typer(azure.app, name="azure")
app.command("register")(register_command)
app.command("deploy-all")(deploy_all_command)
app.add_typer(demo.app, name="demo")
app.add_typer(dev.app, name="dev")


@app.callback(invoke_without_command=True)
def _root(ctx: typer.Context) -> None:
    # `prefect-aci acr ...` moved to `prefect-aci azure acr ...`; the old spelling still works.
    if ctx.invoked_subcommand == "acr":
        console.print("[yellow]warning:[/] `prefect-aci acr` is now `prefect-aci azure acr`")


app.add_typer(azure.acr_app, name="acr", hidden=True)


@app.command("bench")
def bench(
    runs: Annotated[
        int, typer.Option(min=5, max=20, help="Runs per figure (median), for both parts.")
    ] = 5,
) -> None:
    """Everything `make bench` reports: the image against the usual one-stage recipe (`image
    bench`: sizes, builds, starts, pulls, pushes), then flow runs through the ACI workers on
    local ACI (`demo bench`: cold and warm, one at a time, a burst of each, 50 cold at once).
    Settings: those of the two commands."""
    image.bench(runs=runs)
    demo.bench(runs=runs)


def main() -> None:
    run_cli(app)
