"""The Docker engine: connect to it, and on a bare Debian machine (as root) install and start
one, as `make demo` and `make test` need on a new machine."""

import os
import shutil
import subprocess

import docker
from docker.errors import DockerException

from prefect_aci.core.errors import UserError
from prefect_aci.core.paths import SCRIPTS_DIR

ENSURE_DOCKER = SCRIPTS_DIR / "ensure-docker.sh"


def can_install_engine() -> bool:
    """Root on a machine with apt-get, and no other engine named in DOCKER_HOST:
    scripts/ensure-docker.sh can install and start dockerd on the default socket."""
    return (
        os.geteuid() == 0
        and shutil.which("apt-get") is not None
        and not os.environ.get("DOCKER_HOST")
    )


def connect(start: bool = True) -> docker.DockerClient:
    """A client for the engine named by DOCKER_HOST (or the default socket).

    With ``start``, when no engine answers and this is root on Debian, run
    scripts/ensure-docker.sh first (installs docker.io, starts dockerd); anywhere else say how to
    get an engine. A running engine is used as it is, on any system.
    """
    try:
        return _ping()
    except DockerException as exc:
        if not (start and can_install_engine()):
            raise UserError(
                "no Docker engine answers; start Docker (Docker Desktop, or `sudo systemctl "
                "start docker`; add yourself to the docker group), or as root on Debian run "
                f"scripts/ensure-docker.sh to install and start one ({type(exc).__name__})"
            ) from None
    if subprocess.run(["bash", str(ENSURE_DOCKER)]).returncode != 0:
        raise UserError("could not start a Docker engine; see the lines above")
    try:
        return _ping()
    except DockerException as exc:
        raise UserError(f"the Docker engine started but does not answer ({exc})") from None


def _ping() -> docker.DockerClient:
    client = docker.from_env(timeout=600)
    client.ping()
    return client
