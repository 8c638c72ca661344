"""Connection to the Docker engine, with an error that says how to get one."""

import docker
from docker.errors import DockerException

from image_builder.errors import UserError


def connect() -> docker.DockerClient:
    """Return a client for the engine named by DOCKER_HOST (or the default socket)."""
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except DockerException as exc:
        raise UserError(
            "no Docker engine answers; run scripts/ensure-docker.sh (installs and starts one on "
            f"Debian as root) or start Docker yourself ({type(exc).__name__})"
        ) from None
    return client
