"""Builder settings from the environment and .env; command options override them."""

import os
from pathlib import Path

from pydantic import Field

from image_builder.base_pins import pinned
from prefect_aci.core.paths import PROJECT_ROOT
from prefect_aci.core.settings import ProjectSettings

# Pinned by digest (docker/base-images.lock): the build starts from bytes that were tested.
DEFAULT_BASE_IMAGE = pinned("python:3.12-slim-bookworm")
OFFLINE_BASE_IMAGE = "prefect-aci/debian-python:bookworm"
DOCKER_DIR = PROJECT_ROOT / "docker"
# prefect-aci's code inside the image (a wheel of its own): the project's, whichever docker/
# folder (PREFECT_ACI_DOCKER_DIR) the image is built from.
RUNTIME_DIR = PROJECT_ROOT / "runtime"
BENCH_DIR = PROJECT_ROOT / "bench"

# Where corporate and proxied machines already point their tools at a CA bundle, in the order
# pip, requests and OpenSSL consult them.
CA_BUNDLE_VARIABLES = ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")


class ImageSettings(ProjectSettings):
    """How the image is built. Every field can be set as an environment variable or in .env."""

    base_image: str = Field(
        DEFAULT_BASE_IMAGE,
        description="Image the build and final stages start from (Debian-based, with python3).",
    )
    image_python: str | None = Field(
        None,
        description="Python version of the image (3.11, 3.12, 3.13): picks "
        "python:X.Y-slim-bookworm, or the offline base with that Python.",
    )
    image_repository: str = Field(
        "prefect-aci", description="Local repository name the built image is tagged with."
    )
    ca_bundle: Path | None = Field(
        None,
        description="PEM bundle trusted while installing packages in the build stage only; "
        "defaults to the first of PIP_CERT, REQUESTS_CA_BUNDLE, SSL_CERT_FILE that is set.",
    )
    docker_dir: Path = Field(
        DOCKER_DIR, description="Folder holding the Dockerfile, entrypoint.sh and the locks."
    )
    debian_mirror: str | None = Field(
        None,
        description="Debian mirror for the offline base; unset: https://deb.debian.org/debian "
        "when it answers, else http://deb.debian.org/debian (Release signatures are checked "
        "against Debian's keyring either way).",
    )
    offline_base_image: str = Field(
        OFFLINE_BASE_IMAGE, description="Tag of the base image made with debootstrap."
    )
    source_url: str = Field(
        "https://github.com/prefect-aci/prefect-aci",
        description="org.opencontainers.image.source label.",
    )


def detect_ca_bundle(explicit: Path | None) -> Path | None:
    """The CA bundle to trust during the build, or None to use the base image's own."""
    if explicit is not None:
        return explicit
    for name in CA_BUNDLE_VARIABLES:
        value = os.environ.get(name)
        if value:
            return Path(value)
    return None
