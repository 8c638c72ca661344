"""Background processes of a local stack (they outlive `make demo`) and waiting for what they
serve, each wait bounded."""

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import suppress
from pathlib import Path

from prefect_aci.core.errors import UserError


def spawn(command: list[str], log: Path, env: dict[str, str] | None = None) -> int:
    """A background process in its own session, for a clean stop of it and its children."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    return process.pid


def alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def stop(pid: int, grace: float = 10.0) -> bool:
    """SIGTERM the process group `spawn` made, SIGKILL it after ``grace`` seconds; False when
    it was gone already."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return False
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.2)
    with suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    return True


def wait_http(url: str, timeout: float, what: str, context=None) -> None:
    """Until ``url`` answers (any status below 500), or a UserError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5, context=context):  # noqa: S310 (loopback)
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            if isinstance(exc, urllib.error.HTTPError) and exc.code < 500:
                return
            if time.monotonic() > deadline:
                raise UserError(f"{what} did not answer at {url} within {timeout:.0f}s") from None
            time.sleep(0.5)


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        # As the Docker engine binds it: connections of an earlier stack in TIME_WAIT are fine.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
