"""Users' flow images: a prefect-aci image plus their own requirements (docker/child/Dockerfile).

The requirements are resolved inside the parent image itself (its uv, its Python, its platform),
against the parent's installed packages as constraints, into a hashed lock; the build installs that
lock the way the parent's own packages were installed and adds only the new files, one layer.
"""

import re
import time
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.errors import ContainerError
from rich.console import Console

from image_builder.build import stream_build, tag_and_record
from image_builder.context import build_context
from image_builder.probe import image_versions, installed_distributions, require_image
from image_builder.tagging import BASE_DIGEST_LABEL, child_tag
from prefect_aci.core.errors import UserError
from prefect_aci.core.records import ImageRecord

CHILD_FILES = {"Dockerfile": 0o644, "requirements.lock": 0o644}
_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
# Where the parent's uv and Python are: the resolve runs in the parent image.
_RESOLVE = (
    "set -eu; uv pip freeze --python /opt/prefect/venv/bin/python >/tmp/constraints.txt; "
    "exec uv pip compile --quiet --no-header --no-cache --generate-hashes "
    "--python /opt/prefect/venv/bin/python --constraint /tmp/constraints.txt "
    "/etc/prefect-aci/requirements.in"
)
_CA_IN_CONTAINER = "/etc/prefect-aci/ca.pem"
# Index settings a user may have for their own packages; passed to the resolve, never printed.
_INDEX_VARIABLES = ("UV_INDEX_URL", "UV_EXTRA_INDEX_URL", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL")


@dataclass
class ChildRequest:
    parent: str  # image id or reference of a prefect-aci image
    parent_reference: str  # what to write in base.name: the parent's pinned reference or tag
    requirements: Path
    name: str
    lock: Path  # where the resolved, hashed lock is written
    ca_bundle: Path | None
    nocache: bool = False
    verbose: bool = False


def check_name(name: str) -> str:
    if not _NAME.match(name) or len(name) > 128:
        raise UserError(
            f"--name must be a repository name: lower-case letters, digits and . _ - /; got "
            f"{name!r}"
        )
    return name


def _uv_reason(stderr: str) -> str:
    """uv's own words for why it could not resolve, on one line."""
    # uv draws its error tree with box characters; keep the words.
    lines = [
        line.strip(" \u00d7\u2570\u2500\u25b6") for line in stderr.splitlines() if line.strip()
    ]
    return " ".join(lines[-4:])[:600] or "no output"


def resolve(client: docker.DockerClient, request: ChildRequest, env: dict[str, str]) -> str:
    """The hashed lock for the requirements, resolved in the parent image against its packages."""
    if not request.requirements.is_file():
        raise UserError(f"requirements file {request.requirements} does not exist")
    volumes = {
        str(request.requirements.resolve()): {
            "bind": "/etc/prefect-aci/requirements.in",
            "mode": "ro",
        }
    }
    environment = {name: env[name] for name in _INDEX_VARIABLES if env.get(name)}
    if request.ca_bundle is not None:
        volumes[str(request.ca_bundle.resolve())] = {"bind": _CA_IN_CONTAINER, "mode": "ro"}
        environment["SSL_CERT_FILE"] = _CA_IN_CONTAINER
    try:
        output = client.containers.run(
            request.parent,
            ["sh", "-c", _RESOLVE],
            entrypoint="",
            environment=environment,
            volumes=volumes,
            remove=True,
            stdout=True,
            stderr=False,
        )
    except ContainerError as exc:
        stderr = exc.stderr.decode(errors="replace") if exc.stderr else ""
        if "uv: not found" in stderr:
            raise UserError(
                f"{request.parent[:71]} has no uv: build children from a prefect-aci image"
            ) from None
        raise UserError(
            f"could not resolve {request.requirements} against the packages of "
            f"{request.parent_reference}: {_uv_reason(stderr)}"
        ) from None
    return output.decode()


def _parent_digest(client: docker.DockerClient, parent: str) -> str:
    """The parent's registry digest when it was pushed, else its image id: both name its bytes."""
    image = client.images.get(parent)
    digests = image.attrs.get("RepoDigests") or []
    return digests[0].rsplit("@", 1)[1] if digests else image.id


def build_child(
    client: docker.DockerClient, request: ChildRequest, env: dict[str, str], console: Console
) -> ImageRecord:
    """Resolve, build, tag from what the image holds; return its record."""
    require_image(client, request.parent)
    parent_versions = image_versions(client, request.parent)
    console.print(f"[bold]Resolving[/] {request.requirements} against {request.parent_reference}")
    lock = resolve(client, request, env)
    request.lock.parent.mkdir(parents=True, exist_ok=True)
    request.lock.write_text(lock)
    console.print(f"Wrote the hashed lock {request.lock}")
    digest = _parent_digest(client, request.parent)
    work = request.lock.parent
    (work / "Dockerfile").write_bytes(
        (Path(__file__).resolve().parent.parent / "docker" / "child" / "Dockerfile").read_bytes()
    )
    context = build_context(work, request.ca_bundle, CHILD_FILES)
    args = {
        "PARENT_IMAGE": request.parent,
        "PARENT_DIGEST": digest,
        "NAME": request.name,
    }
    started = time.monotonic()
    console.print(f"[bold]Building[/] {request.name} from {request.parent_reference}")
    image_id = stream_build(client, context, args, request.nocache, console, request.verbose)
    versions = image_versions(client, image_id)
    if versions != parent_versions:
        raise UserError(
            f"the requirements changed what the parent holds ({parent_versions.as_dict()} -> "
            f"{versions.as_dict()}); a child may add packages, not replace prefect or Python"
        )
    image = client.images.get(image_id)
    if (image.labels or {}).get(BASE_DIGEST_LABEL) != digest:
        raise UserError("the built image does not name its parent's digest; rebuild")
    tag = child_tag(
        versions.prefect, versions.python_minor, digest, installed_distributions(client, image_id)
    )
    return tag_and_record(
        image, request.name, [tag, "latest"], request.parent_reference, versions, started, console
    )
