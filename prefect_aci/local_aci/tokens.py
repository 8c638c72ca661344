"""Access tokens as Microsoft Entra ID issues them to managed identities: RS256 JWTs carrying the
claims Azure's services read (aud, iss, tid, oid, appid, idtyp, xms_mirid), signed with the local
Azure's key: `verify` checks it, so the local ACI's Resource Manager, Container Instances and Key
Vault take only the tokens it issued."""

import time
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

LIFETIME_SECONDS = 3600


def make_signing_key(path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@dataclass(frozen=True)
class Issued:
    token: str
    expires_on: int


class TokenIssuer:
    def __init__(self, key_path: Path, tenant_id: str) -> None:
        self._key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        self.tenant_id = tenant_id

    @property
    def issuer(self) -> str:
        return f"https://sts.windows.net/{self.tenant_id}/"

    def issue(self, resource: str, client_id: str, principal_id: str, mirid: str = "") -> Issued:
        now = int(time.time())
        claims = {
            "aud": resource.rstrip("/"),
            "iss": self.issuer,
            "iat": now,
            "nbf": now,
            "exp": now + LIFETIME_SECONDS,
            "tid": self.tenant_id,
            "oid": principal_id,
            "sub": principal_id,
            "appid": client_id,
            "idtyp": "app",
            "xms_mirid": mirid,
        }
        return Issued(jwt.encode(claims, self._key, algorithm="RS256"), claims["exp"])

    def verify(self, token: str, audience: str) -> dict | None:
        """The claims of a token this issuer signed for ``audience``, still valid; else None."""
        try:
            return jwt.decode(
                token,
                self._key.public_key(),
                algorithms=["RS256"],
                audience=[audience.rstrip("/"), audience.rstrip("/") + "/"],
                issuer=self.issuer,
            )
        except jwt.PyJWTError:
            return None
