"""Tags derived from the image itself (never typed by hand), in Prefect's scheme plus ours.

``<prefect>-python<X.Y>`` (3.8.8-python3.12), ``<major.minor>-python<X.Y>``, ``3-python<X.Y>``,
``sha-<12 hex>`` from the image's revision label when it names a clean commit, and ``latest``
only when asked for.
"""

import re

import docker

from image_builder.probe import image_versions

REVISION_LABEL = "org.opencontainers.image.revision"
_CLEAN_SHA = re.compile(r"^[0-9a-f]{40}$")


def version_tags(prefect: str, python_minor: str) -> list[str]:
    major, minor = prefect.split(".")[:2]
    return [
        f"{prefect}-python{python_minor}",
        f"{major}.{minor}-python{python_minor}",
        f"{major}-python{python_minor}",
    ]


def sha_tag(revision: str | None) -> str | None:
    """``sha-<12 hex>`` for a clean commit; None for a dirty tree or an unknown revision."""
    if revision and _CLEAN_SHA.match(revision):
        return f"sha-{revision[:12]}"
    return None


def image_tags(client: docker.DockerClient, image: str, latest: bool = False) -> list[str]:
    """Every tag the image earns, read by running it and from its labels."""
    versions = image_versions(client, image)
    tags = version_tags(versions.prefect, versions.python_minor)
    labels = client.images.get(image).labels or {}
    sha = sha_tag(labels.get(REVISION_LABEL))
    if sha:
        tags.append(sha)
    if latest:
        tags.append("latest")
    return tags
