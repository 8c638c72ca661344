"""Tags derived from the image itself (never typed by hand), in Prefect's scheme plus ours.

The runtime image: ``<prefect>-python<X.Y>`` (3.9.1-python3.12), ``<major.minor>-python<X.Y>``,
``<major>-python<X.Y>``, ``sha-<12 hex>`` from the image's revision label when it names a clean
commit, and ``latest`` only when asked for. The server variant: the same with ``-server``.
A child image (users' requirements on top): ``<prefect>-python<X.Y>-<12 hex>``, the hex a digest
of its parent's and of every distribution installed in it.
"""

import hashlib
import re

import docker

from image_builder.probe import image_versions, installed_distributions

REVISION_LABEL = "org.opencontainers.image.revision"
VARIANT_LABEL = "io.prefect-aci.variant"
BASE_DIGEST_LABEL = "org.opencontainers.image.base.digest"
_CLEAN_SHA = re.compile(r"^[0-9a-f]{40}$")


def suffix(variant: str) -> str:
    return "-server" if variant == "server" else ""


def version_tags(prefect: str, python_minor: str, variant: str = "runtime") -> list[str]:
    major, minor = prefect.split(".")[:2]
    end = suffix(variant)
    return [
        f"{prefect}-python{python_minor}{end}",
        f"{major}.{minor}-python{python_minor}{end}",
        f"{major}-python{python_minor}{end}",
    ]


def child_tag(prefect: str, python_minor: str, base_digest: str, distributions: list[str]) -> str:
    """One tag for what a child image holds: its parent and every distribution in it."""
    content = "\n".join([base_digest, *sorted(distributions)]).encode()
    return f"{prefect}-python{python_minor}-{hashlib.sha256(content).hexdigest()[:12]}"


def sha_tag(revision: str | None) -> str | None:
    """``sha-<12 hex>`` for a clean commit; None for a dirty tree or an unknown revision."""
    if revision and _CLEAN_SHA.match(revision):
        return f"sha-{revision[:12]}"
    return None


def image_tags(client: docker.DockerClient, image: str, latest: bool = False) -> list[str]:
    """Every tag the image earns, read by running it and from its labels."""
    versions = image_versions(client, image)
    labels = client.images.get(image).labels or {}
    variant = labels.get(VARIANT_LABEL, "runtime")
    if variant == "child":
        base = labels.get(BASE_DIGEST_LABEL, "")
        installed = installed_distributions(client, image)
        return [child_tag(versions.prefect, versions.python_minor, base, installed)] + (
            ["latest"] if latest else []
        )
    tags = version_tags(versions.prefect, versions.python_minor, variant)
    sha = sha_tag(labels.get(REVISION_LABEL))
    if sha:
        tags.append(sha + suffix(variant))
    if latest:
        tags.append("latest" + suffix(variant))
    return tags
