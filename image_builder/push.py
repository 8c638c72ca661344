"""Push every tag the image earns, then read the digest back from the registry."""

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import docker
from azure.core.credentials import TokenCredential
from docker.errors import APIError
from rich.console import Console

from image_builder.acr import exchange_login
from image_builder.probe import require_image
from image_builder.registry import (
    Login,
    RegistryCredentials,
    RegistryKind,
    registry_kind,
    static_login,
    validate_registry,
    validate_repository,
)
from image_builder.tagging import image_tags
from prefect_aci.core.azure import default_credential
from prefect_aci.core.engine import connect
from prefect_aci.core.errors import UserError, first_line
from prefect_aci.core.records import (
    ImageRecord,
    Publication,
    PublishedImage,
    published,
    read_record,
    write_record,
)
from prefect_aci.core.settings import load

_AUTH_ERROR = re.compile(
    r"unauthorized|authentication required|no basic auth credentials|denied|forbidden|"
    r"incorrect username or password",
    re.IGNORECASE,
)
_TRANSIENT_ERROR = re.compile(
    r"connection reset|broken pipe|\bEOF\b|timeout|timed out|connection refused|"
    r"\b50[0234]\b|service unavailable|bad gateway|gateway timeout|internal server error|"
    r"i/o timeout|no route to host|TLS handshake",
    re.IGNORECASE,
)


@dataclass
class PushOutcome:
    digest: str
    uploaded: dict[str, int] = field(default_factory=dict)  # layer id -> bytes pushed
    existing: set[str] = field(default_factory=set)  # layers the registry already had


class PushFailed(Exception):
    def __init__(self, message: str, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


def follow_push(stream: Iterable[dict], on_status: Callable[[dict], None]) -> PushOutcome:
    """Consume the engine's push stream. Errors arrive inside it, never as exceptions."""
    outcome = PushOutcome(digest="")
    sizes: dict[str, int] = {}
    for chunk in stream:
        if "error" in chunk or "errorDetail" in chunk:
            message = (chunk.get("error") or chunk["errorDetail"].get("message", "")).strip()
            raise PushFailed(
                message,
                transient=bool(_TRANSIENT_ERROR.search(message))
                and not _AUTH_ERROR.search(message),
            )
        layer, status = chunk.get("id", ""), chunk.get("status", "")
        if status == "Pushing" and chunk.get("progressDetail", {}).get("total"):
            sizes[layer] = chunk["progressDetail"]["total"]
        elif status == "Pushed":
            outcome.uploaded[layer] = sizes.get(layer, 0)
        elif status == "Layer already exists":
            outcome.existing.add(layer)
        digest = chunk.get("aux", {}).get("Digest")
        if digest:
            outcome.digest = digest
        on_status(chunk)
    if not outcome.digest:
        raise PushFailed("the engine finished the push without reporting a digest", True)
    return outcome


@dataclass
class PushPlan:
    registry: str
    repository: str
    tags: list[str]
    login: Login | None
    attempts: int = 4
    backoff_seconds: float = 2.0


def _auth_hint(plan: PushPlan) -> str:
    if plan.login is None:
        return (
            "the registry wants credentials: set PREFECT_ACI_REGISTRY_USERNAME and "
            "PREFECT_ACI_REGISTRY_PASSWORD"
        )
    return f"check {plan.login.source}"


def login(client: docker.DockerClient, plan: PushPlan) -> None:
    """Check the credentials with the registry before pushing anything."""
    if plan.login is None:
        return
    try:
        client.api.login(
            plan.login.username,
            plan.login.password.get_secret_value(),
            registry=plan.registry,
            reauth=True,
        )
    except APIError as exc:
        reason = str(exc.explanation or "").strip()
        if untrusted := _untrusted(plan.registry, reason):
            raise untrusted from None
        if _AUTH_ERROR.search(reason) or "401" in reason:
            raise UserError(
                f"registry {plan.registry} rejected the credentials for user "
                f"{plan.login.username}; {_auth_hint(plan)}"
            ) from None
        raise UserError(
            f"cannot log in to registry {plan.registry} "
            f"({_unreachable_reason(reason)}); check the name and that it is "
            "reachable"
        ) from None


_UNTRUSTED = re.compile(r"x509: [^\"\n]*|tls: failed to verify certificate[^\"\n]*", re.IGNORECASE)


def _untrusted(registry: str, reason: str) -> UserError | None:
    """The engine refused the registry's certificate: say where the engine looks for its CA."""
    found = _UNTRUSTED.search(reason)
    if not found:
        return None
    return UserError(
        f"the Docker engine does not trust the TLS certificate of registry {registry} "
        f"({found.group(0).strip()}); put the CA certificate that signed it in "
        f"/etc/docker/certs.d/{registry}/ca.crt (read on each connection, no restart), "
        "or use a certificate from a public CA"
    )


def _unreachable_reason(reason: str) -> str:
    for known in ("connection refused", "no such host", "i/o timeout", "connection reset"):
        if known in reason.lower():
            return known
    return first_line(reason) if reason.strip() else "no answer"


def push_tag(
    client: docker.DockerClient,
    plan: PushPlan,
    tag: str,
    console: Console,
    show: Callable[[dict], None],
) -> PushOutcome:
    """Push one tag, retrying transient failures a bounded number of times with backoff."""
    target = f"{plan.registry}/{plan.repository}"
    for attempt in range(1, plan.attempts + 1):
        try:
            stream = client.api.push(
                target,
                tag=tag,
                stream=True,
                decode=True,
                auth_config=plan.login.auth_config() if plan.login else None,
            )
            return follow_push(stream, show)
        except PushFailed as exc:
            if untrusted := _untrusted(plan.registry, str(exc)):
                raise untrusted from None
            if _AUTH_ERROR.search(str(exc)):
                raise UserError(
                    f"registry {plan.registry} refused the push of {target}:{tag} "
                    f"({exc}); {_auth_hint(plan)}"
                ) from None
            if not exc.transient or attempt == plan.attempts:
                raise UserError(
                    f"push of {target}:{tag} failed after {attempt} attempt(s): "
                    f"{_unreachable_reason(str(exc))}"
                ) from None
            wait = plan.backoff_seconds * 2 ** (attempt - 1)
            console.print(
                f"[yellow]push interrupted ({_unreachable_reason(str(exc))}); "
                f"retrying in {wait:.0f}s (attempt {attempt + 1}/{plan.attempts})[/]"
            )
            time.sleep(wait)
        except APIError as exc:
            if untrusted := _untrusted(plan.registry, str(exc.explanation or exc)):
                raise untrusted from None
            raise UserError(
                f"the engine refused the push of {target}:{tag}: "
                f"{_unreachable_reason(str(exc.explanation or exc))}"
            ) from None
    raise AssertionError("unreachable")  # pragma: no cover


def registry_digest(client: docker.DockerClient, plan: PushPlan, tag: str) -> str:
    """The manifest digest the registry itself serves for ``tag``."""
    try:
        answer = client.api.inspect_distribution(
            f"{plan.registry}/{plan.repository}:{tag}",
            auth_config=plan.login.auth_config() if plan.login else None,
        )
    except APIError as exc:
        raise UserError(
            f"pushed, but registry {plan.registry} does not serve "
            f"{plan.repository}:{tag} ({_unreachable_reason(str(exc.explanation))}); "
            "nothing recorded: push again"
        ) from None
    return answer["Descriptor"]["digest"]


def push_image(
    client: docker.DockerClient, record: ImageRecord, plan: PushPlan, console: Console
) -> PublishedImage:
    """Push all tags; return the record to write: the local build as it was, and where it was
    published (registry, repository, tags, the digest read back)."""
    image = require_image(client, record.image_id)
    login(client, plan)
    target = f"{plan.registry}/{plan.repository}"
    outcomes = []
    for tag in plan.tags:
        image.tag(target, tag)
        console.print(f"[bold]Pushing[/] {target}:{tag}")
        outcome = push_tag(client, plan, tag, console, _printer(console))
        console.print(
            f"  {len(outcome.uploaded)} layer(s) uploaded "
            f"({sum(outcome.uploaded.values()) / 1e6:.1f} MB), "
            f"{len(outcome.existing)} already there, digest {outcome.digest}"
        )
        outcomes.append(outcome)
    digests = {outcome.digest for outcome in outcomes}
    if len(digests) != 1:
        raise UserError(
            f"tags of one image were pushed with different digests {sorted(digests)}; "
            "nothing recorded: push again"
        )
    digest = digests.pop()
    served = registry_digest(client, plan, plan.tags[0])
    if served != digest:
        raise UserError(
            f"registry {plan.registry} serves {served} for {plan.tags[0]}, not the "
            f"pushed {digest}; nothing recorded: push again"
        )
    publication = Publication(
        registry=plan.registry, repository=plan.repository, tags=plan.tags, digest=digest
    )
    return published(record.model_copy(update={"published": publication}))


def _printer(console: Console) -> Callable[[dict], None]:
    """One line per layer as it finishes, plus a progress line every ~25% of a large upload."""
    reported: dict[str, int] = {}

    def show(chunk: dict) -> None:
        layer, status = chunk.get("id", ""), chunk.get("status", "")
        if status in ("Pushed", "Layer already exists"):
            console.print(f"  {layer}: {status}", highlight=False)
        elif status == "Pushing":
            detail = chunk.get("progressDetail") or {}
            total, current = detail.get("total") or 0, detail.get("current") or 0
            if total > 8_000_000:
                quarter = int(4 * current / total)
                if quarter > reported.get(layer, 0):
                    reported[layer] = quarter
                    console.print(
                        f"  {layer}: {current / 1e6:.0f}/{total / 1e6:.0f} MB", highlight=False
                    )

    return show


def registry_repository(
    kind: RegistryKind, local: str, repository: str | None, namespace: str | None
) -> str:
    """The repository's path in the registry: ``[namespace/]repository``, the repository
    defaulting to the local name. It never depends on an earlier push, so pushing twice goes to
    the same place."""
    name = repository or local
    if namespace:
        name = f"{namespace.strip('/')}/{name}"
    return validate_repository(name, kind)


def publish(
    record_path: Path,
    registry: str,
    repository: str | None = None,
    *,
    namespace: str | None = None,
    latest: bool = False,
    attempts: int = 4,
    credential: TokenCredential | None = None,
    console: Console,
) -> PublishedImage:
    """Push the recorded image to ``registry`` and write where it went back to the record.

    Credentials and the namespace come from the PREFECT_ACI_* settings (registry credentials,
    PREFECT_ACI_REGISTRY_NAMESPACE; on Docker Hub the namespace defaults to the Docker Hub user);
    for ACR without a username, an Azure credential (``credential``, else DefaultAzureCredential)
    is exchanged for a registry token.
    """
    image = read_record(record_path)
    target = validate_registry(registry)
    kind = registry_kind(target)
    creds = load(RegistryCredentials)
    namespace = namespace if namespace is not None else creds.registry_namespace
    if kind is RegistryKind.DOCKER_HUB and namespace is None and "/" not in (repository or ""):
        namespace = creds.dockerhub_username
    name = registry_repository(kind, image.repository, repository, namespace)
    login = static_login(kind, creds)
    if kind is RegistryKind.ACR and login is None:
        login = exchange_login(
            target, credential or default_credential(), tenant=creds.azure_tenant_id
        )
    client = connect()
    plan = PushPlan(
        registry=target,
        repository=name,
        login=login,
        attempts=attempts,
        tags=image_tags(client, image.image_id, latest=latest),
    )
    updated = push_image(client, image, plan, console)
    write_record(record_path, updated)
    return updated
