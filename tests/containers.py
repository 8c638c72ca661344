"""Run the image as a black box, the way jupyter/docker-stacks' tracked containers do."""

from dataclasses import dataclass

import docker


@dataclass
class Finished:
    exit_code: int
    stdout: str
    stderr: str


def run_and_wait(
    client: docker.DockerClient,
    image: str,
    command: list[str] | None = None,
    timeout: int = 180,
    **kwargs,
) -> Finished:
    """Start a container, wait for it to end, return its exit code and output; always remove it."""
    container = client.containers.run(image, command, detach=True, **kwargs)
    try:
        status = container.wait(timeout=timeout)
        return Finished(
            exit_code=status["StatusCode"],
            stdout=container.logs(stdout=True, stderr=False).decode(),
            stderr=container.logs(stdout=False, stderr=True).decode(),
        )
    finally:
        container.remove(force=True)
