"""A local HTTP endpoint speaking two documented Azure protocols: the App Service managed identity
token endpoint (what azure-identity's ManagedIdentityCredential calls when IDENTITY_ENDPOINT is
set) and ACR's /oauth2/exchange. No Azure is reached; the real azure-identity code runs."""

import base64
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

IDENTITY_HEADER = "local-identity-header"
TENANT = "11111111-2222-3333-4444-555555555555"
REFRESH_TOKEN = "acr-refresh-token-never-print-me"


def fake_jwt(claims: dict) -> str:
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.signature"


class AzureStandIn:
    def __init__(self, identity_available: bool = True, exchange_status: int = 200) -> None:
        self.identity_available = identity_available
        self.exchange_status = exchange_status
        self.access_token = fake_jwt({"tid": TENANT, "aud": "https://containerregistry.azure.net"})
        self.token_requests: list[dict] = []
        self.exchanges: list[dict] = []
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

            def do_GET(self) -> None:
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
                        "access_token": stand_in.access_token,
                        "expires_on": str(int(time.time()) + 3600),
                        "resource": query.get("resource"),
                        "token_type": "Bearer",
                    },
                )

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                stand_in.exchanges.append({"path": self.path, "form": form})
                if self.path != "/oauth2/exchange":
                    self._answer(404, {})
                elif stand_in.exchange_status != 200:
                    self._answer(stand_in.exchange_status, {"errors": [{"code": "DENIED"}]})
                elif form.get("access_token") != stand_in.access_token:
                    self._answer(401, {"errors": [{"code": "UNAUTHORIZED"}]})
                else:
                    self._answer(200, {"refresh_token": REFRESH_TOKEN})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def identity_env(self) -> dict[str, str]:
        """Environment that makes azure-identity use this endpoint (and never IMDS)."""
        return {
            "IDENTITY_ENDPOINT": f"http://{self.host}/msi/token",
            "IDENTITY_HEADER": IDENTITY_HEADER,
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
