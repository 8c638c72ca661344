"""Registry and repository names, the kind of registry, and where its credentials come from."""

import re
from dataclasses import dataclass
from enum import StrEnum

from pydantic import Field, SecretStr

from prefect_aci.core.azure import is_acr
from prefect_aci.core.errors import UserError
from prefect_aci.core.settings import ProjectSettings

_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
REGISTRY_PATTERN = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*(?::[0-9]{{1,5}})?$")
# The path grammar of the distribution spec (lower case components joined by . _ __ or dashes).
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY_PATTERN = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
DOCKER_HUB_NAMES = ("docker.io", "index.docker.io", "registry-1.docker.io")
ACR_TOKEN_USER = "00000000-0000-0000-0000-000000000000"  # noqa: S105 (a fixed user name)


class RegistryKind(StrEnum):
    ACR = "acr"
    DOCKER_HUB = "dockerhub"
    GENERIC = "generic"


class RegistryCredentials(ProjectSettings):
    """Credentials from the environment or .env; secrets stay SecretStr until handed to Docker."""

    acr_username: str | None = None
    acr_password: SecretStr | None = None
    dockerhub_username: str | None = None
    dockerhub_token: SecretStr | None = None
    registry_username: str | None = None
    registry_password: SecretStr | None = None
    # Pushes go to <registry>/<namespace>/<repository>; on Docker Hub, the user by default.
    registry_namespace: str | None = None
    azure_tenant_id: str | None = Field(None, validation_alias="AZURE_TENANT_ID")


@dataclass(frozen=True)
class Login:
    username: str
    password: SecretStr
    source: str  # which settings it came from, for error messages; never the secret

    def auth_config(self) -> dict[str, str]:
        return {"username": self.username, "password": self.password.get_secret_value()}


def validate_registry(registry: str) -> str:
    name = registry.strip().removeprefix("https://").removeprefix("http://").rstrip("/")
    if name in DOCKER_HUB_NAMES:
        return "docker.io"
    if not REGISTRY_PATTERN.match(name):
        raise UserError(
            f"registry must be a host name with an optional port in lower case, like "
            f"myregistry.azurecr.io, docker.io or 127.0.0.1:5000; got {registry!r}"
        )
    return name


def validate_repository(repository: str, kind: RegistryKind) -> str:
    if not REPOSITORY_PATTERN.match(repository):
        raise UserError(
            "repository must be lower-case path components of letters and digits joined by "
            f". _ __ or -, separated by / (like team/prefect-aci); got {repository!r}"
        )
    if kind is RegistryKind.DOCKER_HUB and "/" not in repository:
        raise UserError(
            "Docker Hub repositories are <namespace>/<name>; pass --namespace <your-user> "
            "(or set PREFECT_ACI_DOCKERHUB_USERNAME)"
        )
    return repository


def registry_kind(registry: str) -> RegistryKind:
    if registry == "docker.io":
        return RegistryKind.DOCKER_HUB
    if is_acr(registry):
        return RegistryKind.ACR
    return RegistryKind.GENERIC


def static_login(kind: RegistryKind, creds: RegistryCredentials) -> Login | None:
    """Username/password logins. None means anonymous (generic) or token exchange (ACR)."""
    pairs = {
        RegistryKind.ACR: (
            creds.acr_username,
            creds.acr_password,
            "PREFECT_ACI_ACR_USERNAME/PREFECT_ACI_ACR_PASSWORD",
        ),
        RegistryKind.DOCKER_HUB: (
            creds.dockerhub_username,
            creds.dockerhub_token,
            "PREFECT_ACI_DOCKERHUB_USERNAME/PREFECT_ACI_DOCKERHUB_TOKEN",
        ),
        RegistryKind.GENERIC: (
            creds.registry_username,
            creds.registry_password,
            "PREFECT_ACI_REGISTRY_USERNAME/PREFECT_ACI_REGISTRY_PASSWORD",
        ),
    }
    username, password, source = pairs[kind]
    if bool(username) != bool(password and password.get_secret_value()):
        raise UserError(f"set both halves of {source}, or neither")
    if username and password:
        return Login(username=username, password=password, source=source)
    if kind is RegistryKind.DOCKER_HUB:
        raise UserError(
            "pushing to Docker Hub needs PREFECT_ACI_DOCKERHUB_USERNAME and "
            "PREFECT_ACI_DOCKERHUB_TOKEN "
            "(an access token from Docker Hub's security settings)"
        )
    return None
