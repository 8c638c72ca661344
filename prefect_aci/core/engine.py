"""The Docker engine and the host programs the local parts need. A running engine and programs on
PATH are used as they are, on any system; on a bare Debian machine, as root, what is missing is
installed (scripts/ensure-docker.sh, scripts/ensure-packages.sh), as `make demo` and `make test`
need on a new machine. Anywhere else one line says what to install."""

import os
import shutil
import subprocess

import docker
from docker.errors import APIError, DockerException

from prefect_aci.core.errors import UserError
from prefect_aci.core.paths import SCRIPTS_DIR

ENSURE_DOCKER = SCRIPTS_DIR / "ensure-docker.sh"
ENSURE_PACKAGES = SCRIPTS_DIR / "ensure-packages.sh"
# Debian package of each program, for the message when it cannot be installed here.
DEBIAN_PACKAGES = {"docker-registry": "docker-registry", "npm": "npm", "debootstrap": "debootstrap"}


def can_install() -> bool:
    """Root on a machine with apt-get."""
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def connect(start: bool = True) -> docker.DockerClient:
    """A client for the engine named by DOCKER_HOST (or the default socket).

    With ``start``, when no engine answers on the default socket and this is root on Debian, run
    scripts/ensure-docker.sh first (installs docker.io, starts dockerd); anywhere else say how to
    get an engine.
    """
    try:
        return _ping()
    except DockerException as exc:
        if not (start and can_install() and not os.environ.get("DOCKER_HOST")):
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


def ensure_programs(*programs: str) -> None:
    """Each program is on PATH afterwards, installed from Debian's packages when this is root on
    Debian; else a UserError naming what is missing."""
    missing = [program for program in programs if shutil.which(program) is None]
    if not missing:
        return
    if can_install():
        if subprocess.run(["bash", str(ENSURE_PACKAGES), *missing]).returncode == 0:
            return
        raise UserError(f"could not install {', '.join(missing)}; see the lines above")
    packages = " ".join(DEBIAN_PACKAGES.get(program, program) for program in missing)
    raise UserError(
        f"{', '.join(missing)} not found on PATH; install it (on Debian or Ubuntu: "
        f"apt-get install {packages}) and retry"
    )


def make_network(
    client: docker.DockerClient,
    name: str,
    subnets: list[str] | tuple[str, ...],
    labels: dict[str, str] | None = None,
) -> tuple:
    """A bridge network on the first of ``subnets`` (x.y.z.0/24) that overlaps nothing here, its
    gateway at x.y.z.1 chosen by us (an engine does not always report the one it picks); returns
    the network and the x.y.z prefix. The engine hands out addresses from x.y.z.128/25 only, so
    the fixed ones below it (a stack's stand-in, server, database) are never taken by a container
    that came back first after an engine restart."""
    for subnet in subnets:
        prefix = subnet.rsplit(".", 1)[0]
        pool = docker.types.IPAMPool(
            subnet=subnet, iprange=f"{prefix}.128/25", gateway=f"{prefix}.1"
        )
        try:
            network = client.networks.create(
                name,
                driver="bridge",
                ipam=docker.types.IPAMConfig(pool_configs=[pool]),
                labels=labels or {},
            )
        except APIError as exc:
            if "overlap" in str(exc.explanation).lower():
                continue
            raise UserError(f"Docker could not make network {name}: {exc.explanation}") from None
        return network, prefix
    raise UserError(
        f"every candidate subnet ({subnets[0]} ... {subnets[-1]}) overlaps a network of this "
        "machine; remove unused Docker networks (docker network prune) and retry"
    )
