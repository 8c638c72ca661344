"""A local HTTP endpoint speaking documented Azure protocols: the App Service managed identity
token endpoint (what azure-identity's ManagedIdentityCredential calls when IDENTITY_ENDPOINT is
set), ACR's /oauth2/exchange and /oauth2/token, and the ACR tag API behind a 401 challenge. No
Azure is reached; the real azure-identity and azure-containerregistry code runs against it."""

import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt

from tests.redirect import RedirectTransport

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


class AzureStandIn:
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
        self.token_requests: list[dict] = []
        self.exchanges: list[dict] = []
        self.tags: dict[str, list[dict]] = {}
        self.deleted: list[str] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _acr_authorized(self, repository: str) -> bool:
                if self.headers.get("Authorization") == f"Bearer {ACR_ACCESS_TOKEN}":
                    return True
                data = b"{}"
                self.send_response(401)
                self.send_header(
                    "WWW-Authenticate",
                    f'Bearer realm="https://{ACR_SERVICE}/oauth2/token",'
                    f'service="{ACR_SERVICE}",'
                    f'scope="repository:{repository}:metadata_read,delete"',
                )
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return False

            def _acr_path(self) -> tuple[str, str | None] | None:
                path = urllib.parse.urlparse(self.path).path
                if not path.startswith("/acr/v1/") or "/_tags" not in path:
                    return None
                repository, _, rest = path[len("/acr/v1/") :].partition("/_tags")
                return urllib.parse.unquote(repository), rest.lstrip("/") or None

            def do_DELETE(self) -> None:
                target = self._acr_path()
                if target is None or target[1] is None:
                    self._answer(404, {})
                    return
                repository, tag = target
                if not self._acr_authorized(repository):
                    return
                before = len(stand_in.tags.get(repository, []))
                stand_in.tags[repository] = [
                    t for t in stand_in.tags.get(repository, []) if t["name"] != tag
                ]
                if len(stand_in.tags[repository]) == before:
                    self._answer(404, {"errors": [{"code": "TAG_UNKNOWN"}]})
                    return
                stand_in.deleted.append(tag)
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                target = self._acr_path()
                if target is not None:
                    repository, _ = target
                    if not self._acr_authorized(repository):
                        return
                    if repository not in stand_in.tags:
                        self._answer(404, {"errors": [{"code": "NAME_UNKNOWN"}]})
                        return
                    newest_first = sorted(
                        stand_in.tags[repository], key=lambda t: t["lastUpdateTime"], reverse=True
                    )
                    self._answer(
                        200,
                        {"registry": ACR_SERVICE, "imageName": repository, "tags": newest_first},
                    )
                    return
                url = urllib.parse.urlparse(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                stand_in.token_requests.append(
                    {
                        "path": url.path,
                        "query": query,
                        "header": self.headers.get("X-IDENTITY-HEADER"),
                    }
                )
                if not stand_in.identity_available:
                    self._answer(
                        400,
                        {
                            "error": "invalid_request",
                            "error_description": "No managed identity is assigned",
                        },
                    )
                    return
                if self.headers.get("X-IDENTITY-HEADER") != IDENTITY_HEADER:
                    self._answer(401, {"error": "unauthorized"})
                    return
                self._answer(
                    200,
                    {
                        "access_token": stand_in.token_for(query.get("resource", "")),
                        "expires_on": str(int(time.time()) + 3600),
                        "resource": query.get("resource"),
                        "token_type": "Bearer",
                    },
                )

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                path = urllib.parse.urlparse(self.path).path
                stand_in.exchanges.append({"path": path, "form": form})
                if path == "/oauth2/token":
                    if form.get("refresh_token") != REFRESH_TOKEN:
                        self._answer(401, {"errors": [{"code": "UNAUTHORIZED"}]})
                    else:
                        self._answer(200, {"access_token": ACR_ACCESS_TOKEN})
                elif path != "/oauth2/exchange":
                    self._answer(404, {})
                elif stand_in.exchange_status != 200:
                    self._answer(stand_in.exchange_status, {"errors": [{"code": "DENIED"}]})
                elif form.get("access_token") != stand_in.access_token:
                    self._answer(401, {"errors": [{"code": "UNAUTHORIZED"}]})
                else:
                    self._answer(200, {"refresh_token": REFRESH_TOKEN})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token_for(self, resource: str) -> str:
        if resource.startswith("https://storage.azure.com"):
            return self.storage_token
        return self.access_token

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

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
        return RedirectTransport(f"https://{ACR_SERVICE}", f"http://{self.host}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
