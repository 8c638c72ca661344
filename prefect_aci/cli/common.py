"""What every command module shares: how a group is made, and how a command ends."""

import logging
import os

import typer
from rich.markup import escape

from prefect_aci.core.console import console
from prefect_aci.core.errors import UserError


def command_group(help_text: str) -> typer.Typer:
    """A Typer app that stays a group of subcommands even when it has only one."""
    app = typer.Typer(
        help=help_text, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False
    )

    @app.callback()
    def _group() -> None:
        pass

    return app


def run_cli(app: typer.Typer) -> None:
    """Run a command the way every prefect-aci command runs: a UserError becomes one `error:`
    line and its exit code, never a traceback; Ctrl-C exits 130.

    azure-identity logs every credential it tried, with tracebacks, through logging's
    last-resort handler; the error line already says what to do. PREFECT_ACI_DEBUG=1 keeps them.
    """
    if not os.environ.get("PREFECT_ACI_DEBUG"):
        logging.getLogger("azure").setLevel(logging.CRITICAL)
    try:
        app()
    except UserError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:
        console.print("[bold red]interrupted[/]")
        raise SystemExit(130) from None
