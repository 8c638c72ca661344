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
