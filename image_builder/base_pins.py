"""The production bases pinned by digest (docker/base-images.lock), and their refresh."""

import re
from collections.abc import Callable
from pathlib import Path

from prefect_aci.core.errors import UserError
from prefect_aci.core.paths import PROJECT_ROOT

PINS_FILE = PROJECT_ROOT / "docker" / "base-images.lock"
PIN = re.compile(r"^(?P<name>[^@\s]+:[^@\s]+)@(?P<digest>sha256:[0-9a-f]{64})$")
# Dockerfiles whose BASE_IMAGE default is a pinned base: what `docker build` uses by hand (the
# builder always passes BASE_IMAGE).
DOCKERFILES = (PROJECT_ROOT / "docker" / "Dockerfile", PROJECT_ROOT / "bench" / "Dockerfile")
ARG_DEFAULT = re.compile(r"^ARG BASE_IMAGE=(?P<name>[^@\s]+)(@sha256:[0-9a-f]{64})?$", re.MULTILINE)


def read_pins(path: Path = PINS_FILE) -> dict[str, str]:
    """name:tag -> name:tag@sha256:..., for each pin in ``path``."""
    pins = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        match = PIN.match(line.strip())
        if match is None:
            raise UserError(f"{path}:{number}: expected name:tag@sha256:<64 hex>; got {line!r}")
        pins[match["name"]] = match[0]
    return pins


def pinned(reference: str, path: Path = PINS_FILE) -> str:
    """``reference`` with the digest it is pinned to, or unchanged when it is not pinned."""
    return read_pins(path).get(reference, reference)


def refresh_pins(digest_of: Callable[[str], str], path: Path = PINS_FILE) -> dict[str, str]:
    """Ask ``digest_of`` for each pinned name:tag's current digest and rewrite ``path`` (comments
    kept); the pins that moved, name:tag -> new reference."""
    moved = {}
    lines = []
    for line in path.read_text().splitlines():
        match = PIN.match(line.strip())
        if match is not None:
            digest = digest_of(match["name"])
            if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
                raise UserError(f"the registry gave {match['name']} no sha256 digest: {digest!r}")
            line = f"{match['name']}@{digest}"
            if line != match[0]:
                moved[match["name"]] = line
        lines.append(line)
    path.write_text("\n".join(lines) + "\n")
    return moved


def repin_dockerfile(path: Path, pins: dict[str, str]) -> None:
    """Point ``ARG BASE_IMAGE=`` of ``path`` at the pin of its name:tag, if it has one."""

    def repinned(match: re.Match) -> str:
        current = match[0].split("=", 1)[1]
        return f"ARG BASE_IMAGE={pins.get(match['name'], current)}"

    path.write_text(ARG_DEFAULT.sub(repinned, path.read_text()))
