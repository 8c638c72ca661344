"""A local HTTP endpoint speaking documented Azure protocols: the App Service managed identity
token endpoint (what azure-identity's ManagedIdentityCredential calls when IDENTITY_ENDPOINT is
set), ACR's /oauth2/exchange and /oauth2/token, and the ACR tag API behind a 401 challenge. No
Azure is reached; the real azure-identity and azure-containerregistry code runs against it."""

import time
import urllib.parse

import jwt

from tests.redirect import RedirectTransport
from tests.stand_ins import Answer, Request, StandIn

IDENTITY_HEADER = "local-identity-header"
TENANT = "11111111-2222-3333-4444-555555555555"
REFRESH_TOKEN = "acr-refresh-token-never-print-me"
ACR_ACCESS_TOKEN = "acr-access-token"
ACR_SERVICE = "prefectacitest.azurecr.io"
PRINCIPAL_ID = "9a8b7c6d-0000-4000-8000-00000000a11c"  # the object id this identity's tokens carry


def fake_jwt(claims: dict) -> str:
    """A well-formed JWT with Azure's claims, signed with a local key (nothing here verifies
    signatures: ARM, ACR and Storage do that in Azure)."""
    return jwt.encode(claims, "prefect-aci-stand-in-signing-key-0123456789", algorithm="HS256")


def acr_target(path: str) -> tuple[str, str | None] | None:
    """(repository, tag or None) of an ACR tag API path, None for any other path."""
    if not path.startswith("/acr/v1/") or "/_tags" not in path:
        return None
    repository, _, rest = path[len("/acr/v1/") :].partition("/_tags")
    return urllib.parse.unquote(repository), rest.lstrip("/") or None


def is_token_request(request: Request) -> bool:
    return request.method == "GET" and acr_target(request.path) is None


class AzureStandIn(StandIn):
    def __init__(self, identity_available: bool = True, exchange_status: int = 200) -> None:
        self.identity_available = identity_available
        self.exchange_status = exchange_status
        now = int(time.time())
        identity = {
            "tid": TENANT,
            "iss": f"https://sts.windows.net/{TENANT}/",
            "oid": PRINCIPAL_ID,
            "idtyp": "app",
            "iat": now - 60,
            "nbf": now - 60,
            "exp": now + 6 * 3600,
        }
        self.access_token = fake_jwt({**identity, "aud": "https://containerregistry.azure.net"})
        # Storage checks the audience (Azurite with --oauth basic does too).
        self.storage_token = fake_jwt({**identity, "aud": "https://storage.azure.com"})
        self.tags: dict[str, list[dict]] = {}
        self.deleted: list[str] = []
        super().__init__()

    @property
    def token_requests(self) -> list[dict]:
        return [
            {"path": r.path, "query": r.query, "header": r.headers.get("X-IDENTITY-HEADER")}
            for r in self.received
            if is_token_request(r)
        ]

    @property
    def exchanges(self) -> list[dict]:
        return [{"path": r.path, "form": r.form()} for r in self.received if r.method == "POST"]

    def answer(self, request: Request) -> Answer:
        if request.method == "POST":
            return self._exchange(request.path, request.form())
        if is_token_request(request):
            return self._token(request)
        target = acr_target(request.path)
        if target is None:
            return Answer(404, {})
        repository, tag = target
        if request.headers.get("Authorization") != f"Bearer {ACR_ACCESS_TOKEN}":
            challenge = (
                f'Bearer realm="https://{ACR_SERVICE}/oauth2/token",service="{ACR_SERVICE}",'
                f'scope="repository:{repository}:metadata_read,delete"'
            )
            return Answer(401, b"{}", {"WWW-Authenticate": challenge})
        if request.method == "GET":
            return self._list(repository)
        if request.method == "DELETE" and tag is not None:
            return self._delete(repository, tag)
        return Answer(404, {})

    def _token(self, request: Request) -> Answer:
        if not self.identity_available:
            return Answer(
                400,
                {
                    "error": "invalid_request",
                    "error_description": "No managed identity is assigned",
                },
            )
        if request.headers.get("X-IDENTITY-HEADER") != IDENTITY_HEADER:
            return Answer(401, {"error": "unauthorized"})
        resource = request.query.get("resource")
        return Answer(
            200,
            {
                "access_token": self.token_for(resource or ""),
                "expires_on": str(int(time.time()) + 3600),
                "resource": resource,
                "token_type": "Bearer",
            },
        )

    def _exchange(self, path: str, form: dict[str, str]) -> Answer:
        if path == "/oauth2/token":
            if form.get("refresh_token") != REFRESH_TOKEN:
                return Answer(401, {"errors": [{"code": "UNAUTHORIZED"}]})
            return Answer(200, {"access_token": ACR_ACCESS_TOKEN})
        if path != "/oauth2/exchange":
            return Answer(404, {})
        if self.exchange_status != 200:
            return Answer(self.exchange_status, {"errors": [{"code": "DENIED"}]})
        if form.get("access_token") != self.access_token:
            return Answer(401, {"errors": [{"code": "UNAUTHORIZED"}]})
        return Answer(200, {"refresh_token": REFRESH_TOKEN})

    def _list(self, repository: str) -> Answer:
        if repository not in self.tags:
            return Answer(404, {"errors": [{"code": "NAME_UNKNOWN"}]})
        newest_first = sorted(
            self.tags[repository], key=lambda t: t["lastUpdateTime"], reverse=True
        )
        return Answer(200, {"registry": ACR_SERVICE, "imageName": repository, "tags": newest_first})

    def _delete(self, repository: str, tag: str) -> Answer:
        kept = [t for t in self.tags.get(repository, []) if t["name"] != tag]
        if len(kept) == len(self.tags.get(repository, [])):
            return Answer(404, {"errors": [{"code": "TAG_UNKNOWN"}]})
        self.tags[repository] = kept
        self.deleted.append(tag)
        return Answer(202)

    def token_for(self, resource: str) -> str:
        if resource.startswith("https://storage.azure.com"):
            return self.storage_token
        return self.access_token

    def identity_env(self) -> dict[str, str]:
        """Environment that makes azure-identity use this endpoint (and never IMDS)."""
        return {
            "IDENTITY_ENDPOINT": f"http://{self.host}/msi/token",
            "IDENTITY_HEADER": IDENTITY_HEADER,
        }

    def add_tag(self, repository: str, name: str, digest: str, updated: str) -> None:
        self.tags.setdefault(repository, []).append(
            {
                "name": name,
                "digest": digest,
                "createdTime": updated,
                "lastUpdateTime": updated,
                "signed": False,
                "changeableAttributes": {
                    "deleteEnabled": True,
                    "writeEnabled": True,
                    "readEnabled": True,
                    "listEnabled": True,
                },
            }
        )

    def transport(self) -> RedirectTransport:
        """azure-core's requests transport, sending https://<ACR_SERVICE> here instead."""
        return RedirectTransport(f"https://{ACR_SERVICE}", self.url)
