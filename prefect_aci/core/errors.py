"""The one error type every command turns into a one-line message and a non-zero exit."""


class UserError(Exception):
    """A problem the user can fix; the message says what to do.

    Raised for bad input and for unmet preconditions (no engine, no base image, a failed build
    step). The command line prints it on one line, without a traceback, and exits with
    ``exit_code``.
    """

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def first_line(problem: BaseException | str | None, limit: int = 160) -> str:
    """The first non-empty line of an error (or of its text), at most ``limit`` characters: what
    goes in parentheses on an `error:` line. An exception with no text gives its type's name."""
    if isinstance(problem, BaseException):
        # Azure SDK errors carry the service's own message in .error.message.
        text = getattr(getattr(problem, "error", None), "message", None) or str(problem)
        fallback = type(problem).__name__
    else:
        text, fallback = problem or "", "no detail"
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return (lines[0] if lines else fallback)[:limit]


def last_line(output: str | None, limit: int = 160) -> str:
    """The last non-empty line of a program's output (where it says why it stopped)."""
    lines = [line.strip() for line in (output or "").splitlines() if line.strip()]
    return (lines[-1] if lines else "no output")[:limit]
