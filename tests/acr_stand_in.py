"""A local HTTP endpoint speaking a documented Azure protocol: the App Service managed identity
token endpoint (what azure-identity's ManagedIdentityCredential calls when IDENTITY_ENDPOINT is
set). No Azure is reached; the real azure-identity code runs against it. (ACR itself is local
ACR's, tests.local_aci.acr_helpers.)"""

import time

import jwt

from tests.stand_ins import Answer, Request, StandIn

IDENTITY_HEADER = "local-identity-header"
TENANT = "11111111-2222-3333-4444-555555555555"
PRINCIPAL_ID = "9a8b7c6d-0000-4000-8000-00000000a11c"  # the object id this identity's tokens carry


def fake_jwt(claims: dict) -> str:
    """A well-formed JWT with Azure's claims, signed with a local key (nothing here verifies
    signatures: ARM and Storage do that in Azure)."""
    return jwt.encode(claims, "prefect-aci-stand-in-signing-key-0123456789", algorithm="HS256")


class AzureStandIn(StandIn):
    def __init__(self, identity_available: bool = True) -> None:
        self.identity_available = identity_available
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
        super().__init__()

    @property
    def token_requests(self) -> list[dict]:
        return [
            {"path": r.path, "query": r.query, "header": r.headers.get("X-IDENTITY-HEADER")}
            for r in self.received
            if r.method == "GET"
        ]

    def answer(self, request: Request) -> Answer:
        if request.method != "GET":
            return Answer(404, {})
        return self._token(request)

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
