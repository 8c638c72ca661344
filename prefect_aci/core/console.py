"""Where prefect-aci prints: progress and errors to stderr, results to stdout; and the step
printer that times each part of a long command."""

import time
from collections.abc import Callable

from rich.console import Console

# Progress and errors go to stderr, so stdout carries only results (a reference, tags, JSON).
console = Console(stderr=True, soft_wrap=True)


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
