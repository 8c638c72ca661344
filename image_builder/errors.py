"""The one error type the CLI turns into a one-line message and a non-zero exit."""


class UserError(Exception):
    """A problem the user can fix; the message says what to do.

    Raised for bad input and for unmet preconditions (no engine, no base image, a failed build
    step). The CLI prints it on one line, without a traceback, and exits with ``exit_code``.
    """

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def run_cli(app, console) -> None:
    """Run a typer app the way every prefect-aci command runs: a UserError becomes one
    `error:` line and its exit code, never a traceback; Ctrl-C exits 130.

    azure-identity logs every credential it tried, with tracebacks, through logging's
    last-resort handler; the error line already says what to do. PREFECT_ACI_DEBUG=1 keeps them.
    """
    import logging
    import os

    from rich.markup import escape

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
