"""ACR housekeeping with azure-containerregistry: list tags, prune old ones, never a pinned one."""

from dataclasses import dataclass
from datetime import datetime

from azure.containerregistry import ArtifactTagOrder, ContainerRegistryClient
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.core.pipeline.transport import HttpTransport

from image_builder.acr import NO_CREDENTIAL_HINT
from prefect_aci.core.errors import UserError, first_line

ACR_AUDIENCE = "https://containerregistry.azure.net"


@dataclass(frozen=True)
class TagInfo:
    name: str
    digest: str
    updated: datetime


def acr_client(
    login_server: str, credential: TokenCredential, transport: HttpTransport | None = None
) -> ContainerRegistryClient:
    kwargs = {"transport": transport} if transport else {}
    return ContainerRegistryClient(
        f"https://{login_server}", credential, audience=ACR_AUDIENCE, **kwargs
    )


def list_tags(client: ContainerRegistryClient, repository: str) -> list[TagInfo]:
    """Tags of ``repository``, newest first."""
    try:
        return [
            TagInfo(tag.name, tag.digest, tag.last_updated_on)
            for tag in client.list_tag_properties(
                repository, order_by=ArtifactTagOrder.LAST_UPDATED_ON_DESCENDING
            )
        ]
    except ResourceNotFoundError:
        raise UserError(
            f"repository {repository} does not exist in the registry; check --repository"
        ) from None
    except ClientAuthenticationError as exc:
        raise UserError(
            f"the registry refused the Azure credential ({first_line(exc)}); {NO_CREDENTIAL_HINT}"
        ) from None
    except (HttpResponseError, ServiceRequestError) as exc:
        raise UserError(f"listing tags failed ({first_line(exc)}); check --registry") from None


def prune_plan(
    tags: list[TagInfo], keep: int, pinned_digest: str | None, pinned_tags: set[str]
) -> list[TagInfo]:
    """Tags to delete: all but the ``keep`` newest, sparing what build/image.json pins."""
    if keep < 1:
        raise UserError(f"--keep must be at least 1; got {keep}")
    ordered = sorted(tags, key=lambda tag: tag.updated, reverse=True)
    return [
        tag for tag in ordered[keep:] if tag.digest != pinned_digest and tag.name not in pinned_tags
    ]


def delete_tags(client: ContainerRegistryClient, repository: str, doomed: list[TagInfo]) -> None:
    for tag in doomed:
        try:
            client.delete_tag(repository, tag.name)
        except HttpResponseError as exc:
            raise UserError(
                f"deleting tag {tag.name} failed ({first_line(exc)}); the identity "
                "needs AcrDelete (or AcrPush with delete) on the registry"
            ) from None
