"""Ask an image what it contains, by running it: the only source of truth for tags and labels."""

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import docker
import docker.models.images
from docker.errors import ContainerError, ImageNotFound

from prefect_aci.core.errors import UserError

_VERSION_PROBE = (
    "import json, platform, importlib.metadata as m; "
    "print(json.dumps({'python': platform.python_version(), "
    "'prefect': m.version('prefect'), 'prefect_azure': m.version('prefect-azure')}))"
)


@dataclass(frozen=True)
class ImageVersions:
    python: str
    prefect: str
    prefect_azure: str

    @property
    def python_minor(self) -> str:
        return ".".join(self.python.split(".")[:2])

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def require_image(client: docker.DockerClient, image: str) -> docker.models.images.Image:
    """The local image, or a UserError: never let ``run`` fall back to pulling it."""
    try:
        return client.images.get(image)
    except ImageNotFound:
        raise UserError(
            f"image {image[:71]} is not in the engine; build it first (make image)"
        ) from None


def run_python(client: docker.DockerClient, image: str, code: str, entrypoint: str = "") -> str:
    """Run ``python3 -c code`` in a throwaway container of ``image`` and return its stdout."""
    require_image(client, image)
    try:
        output = client.containers.run(
            image,
            ["python3", "-c", code],
            entrypoint=entrypoint or None,
            remove=True,
            stdout=True,
            stderr=False,
            network_disabled=True,
        )
    except ContainerError as exc:
        raise UserError(f"could not run python3 in {image}: {exc.stderr!r}") from None
    return output.decode().strip()


def image_versions(client: docker.DockerClient, image: str) -> ImageVersions:
    """Python, Prefect and prefect-azure versions as the built image reports them."""
    return ImageVersions(**json.loads(run_python(client, image, _VERSION_PROBE)))


_DISTRIBUTIONS_PROBE = (
    "import json, importlib.metadata as m; "
    "print(json.dumps(sorted(f\"{d.metadata['Name'].lower()}=={d.version}\" "
    "for d in m.distributions())))"
)


def installed_distributions(client: docker.DockerClient, image: str) -> list[str]:
    """``name==version`` of every distribution the image's Python sees."""
    return json.loads(run_python(client, image, _DISTRIBUTIONS_PROBE))


def has_ui(client: docker.DockerClient, image: str) -> bool:
    """Whether the image holds the Prefect UI that `prefect server start` serves."""
    probe = "import prefect; print(prefect.__ui_static_path__.joinpath('index.html').is_file())"
    return run_python(client, image, probe) == "True"


def base_python_version(client: docker.DockerClient, base_image: str) -> str:
    """The Python version a base image provides (its entrypoint bypassed)."""
    return run_python(
        client, base_image, "import platform; print(platform.python_version())", entrypoint="env"
    )


def locked_version(lock_file: Path, package: str) -> str:
    """The version ``package`` is pinned to in a pip-style lock file."""
    match = re.search(rf"^{re.escape(package)}==(\S+)", lock_file.read_text(), re.MULTILINE)
    if match is None:
        raise UserError(f"{package} is not pinned in {lock_file}; regenerate it with make lock")
    return match.group(1)
