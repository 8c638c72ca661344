"""What every prefect-aci command line shares: how its Typer app is made, where it prints, and
how a UserError ends it."""

import logging
import os
import time
from collections.abc import Callable

import typer
from rich.console import Console
from rich.markup import escape

from prefect_aci.core.errors import UserError

# Progress and errors go to stderr, so stdout carries only results (a reference, tags, JSON).
console = Console(stderr=True, soft_wrap=True)


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


class Step:
    """Prints what is starting, and how long it took."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.started = time.monotonic()

    def __call__(self, message: str, action: Callable[[], object]) -> object:
        began = time.monotonic()
        self.console.print(f"[bold cyan]>[/] {message} ...", highlight=False)
        result = action()
        self.console.print(
            f"  done in {time.monotonic() - began:.1f}s "
            f"[dim](total {time.monotonic() - self.started:.0f}s)[/]"
        )
        return result
