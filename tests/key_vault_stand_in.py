"""A local endpoint speaking Key Vault's secrets API behind its 401 bearer challenge."""

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.redirect import RedirectTransport

VAULT = "https://prefectacitest.vault.azure.net"
TENANT = "11111111-2222-3333-4444-555555555555"


class KeyVaultStandIn:
    def __init__(self, bearer: str, secrets: dict[str, str]) -> None:
        self.bearer = bearer
        self.secrets = secrets
        self.requests: list[dict] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _answer(self, status: int, body: dict, headers: dict | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urllib.parse.urlparse(self.path)
                auth = self.headers.get("Authorization")
                stand_in.requests.append({"path": url.path, "authorization": auth})
                if auth != f"Bearer {stand_in.bearer}":
                    challenge = (
                        f'Bearer authorization="https://login.microsoftonline.com/'
                        f'{TENANT}", resource="https://vault.azure.net"'
                    )
                    self._answer(
                        401, {"error": {"code": "Unauthorized"}}, {"WWW-Authenticate": challenge}
                    )
                    return
                parts = [p for p in url.path.split("/") if p]
                if len(parts) >= 2 and parts[0] == "secrets" and parts[1] in stand_in.secrets:
                    name = parts[1]
                    self._answer(
                        200,
                        {
                            "value": stand_in.secrets[name],
                            "id": f"{VAULT}/secrets/{name}/0123456789abcdef",
                            "attributes": {"enabled": True},
                        },
                    )
                else:
                    self._answer(404, {"error": {"code": "SecretNotFound", "message": url.path}})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def transport(self) -> RedirectTransport:
        return RedirectTransport(VAULT, f"http://127.0.0.1:{self.server.server_address[1]}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
