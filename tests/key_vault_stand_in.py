"""A local endpoint speaking Key Vault's secrets API behind its 401 bearer challenge, over HTTPS
with a certificate for the vault's Azure host name: tests reach it at that name through
tests.stand_ins.AzureHostsProxy, since the SDK only accepts a challenge whose resource matches
the vault's host."""

from prefect_aci.local_aci.tls import LocalTls
from tests.stand_ins import Answer, Request, StandIn

VAULT_HOST = "prefectacitest.vault.azure.net"
VAULT = f"https://{VAULT_HOST}"
TENANT = "11111111-2222-3333-4444-555555555555"


class KeyVaultStandIn(StandIn):
    """``tls`` must be good for VAULT_HOST: make_tls(..., names=(VAULT_HOST,))."""

    def __init__(self, bearer: str, secrets: dict[str, str], tls: LocalTls) -> None:
        self.bearer = bearer
        self.secrets = secrets
        super().__init__(tls)

    @property
    def requests(self) -> list[dict]:
        return [
            {"path": r.path, "authorization": r.headers.get("Authorization")} for r in self.received
        ]

    def answer(self, request: Request) -> Answer:
        if request.headers.get("Authorization") != f"Bearer {self.bearer}":
            challenge = (
                f'Bearer authorization="https://login.microsoftonline.com/{TENANT}", '
                'resource="https://vault.azure.net"'
            )
            return Answer(401, {"error": {"code": "Unauthorized"}}, {"WWW-Authenticate": challenge})
        parts = [p for p in request.path.split("/") if p]
        if request.method == "GET" and len(parts) >= 2 and parts[0] == "secrets":
            name = parts[1]
            if name in self.secrets:
                return Answer(
                    200,
                    {
                        "value": self.secrets[name],
                        "id": f"{VAULT}/secrets/{name}/0123456789abcdef",
                        "attributes": {"enabled": True},
                    },
                )
        return Answer(404, {"error": {"code": "SecretNotFound", "message": request.path}})
