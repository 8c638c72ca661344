"""ACR login without the az CLI: an Azure AD token exchanged for an ACR refresh token.

The protocol (documented by ACR): POST ``https://<registry>/oauth2/exchange`` with the form
``grant_type=access_token, service=<registry>, tenant=<tenant>, access_token=<AAD token>``; the
answer's ``refresh_token`` is the password of user ``00000000-0000-0000-0000-000000000000``.
"""

import jwt
from azure.core import PipelineClient
from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, ClientAuthenticationError
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest
from pydantic import SecretStr

from image_builder.registry import ACR_TOKEN_USER, Login
from prefect_aci.core.errors import UserError, first_line

ACR_SCOPE = "https://containerregistry.azure.net/.default"
NO_CREDENTIAL_HINT = (
    "run `az login`, set AZURE_TENANT_ID/AZURE_CLIENT_ID/AZURE_CLIENT_SECRET for a service "
    "principal, run where a managed identity is assigned, or set "
    "PREFECT_ACI_ACR_USERNAME/PREFECT_ACI_ACR_PASSWORD for the registry's admin user"
)


def _tenant_of(token: str) -> str | None:
    """The ``tid`` claim of a JWT access token (read, not verified: ACR verifies it)."""
    try:
        return jwt.decode(token, options={"verify_signature": False}).get("tid")
    except jwt.PyJWTError:
        return None


def exchange_login(
    login_server: str,
    credential: TokenCredential,
    tenant: str | None = None,
    scheme: str = "https",
    transport: HttpTransport | None = None,
) -> Login:
    """Docker credentials for ``login_server`` from an Azure credential, via /oauth2/exchange."""
    try:
        aad_token = credential.get_token(ACR_SCOPE).token
    except ClientAuthenticationError as exc:
        raise UserError(
            f"no Azure credential for ACR {login_server} ({first_line(exc)}); {NO_CREDENTIAL_HINT}"
        ) from None
    form = {
        "grant_type": "access_token",
        "service": login_server,
        "access_token": aad_token,
    }
    tenant = tenant or _tenant_of(aad_token)
    if tenant:
        form["tenant"] = tenant
    base_url = f"{scheme}://{login_server}"
    client = PipelineClient(base_url=base_url, transport=transport)
    try:
        response = client.send_request(
            HttpRequest("POST", f"{base_url}/oauth2/exchange", data=form)
        )
    except AzureError as exc:
        raise UserError(
            f"cannot reach ACR {login_server} for the token exchange "
            f"({type(exc).__name__}); check the registry name and network"
        ) from None
    if response.status_code in (401, 403):
        raise UserError(
            f"ACR {login_server} refused the Azure token (HTTP "
            f"{response.status_code}); the identity needs AcrPush on the registry"
        )
    if response.status_code != 200:
        raise UserError(
            f"ACR {login_server} token exchange failed with HTTP "
            f"{response.status_code}; check the registry name"
        )
    try:
        refresh_token = response.json()["refresh_token"]
    except (ValueError, KeyError):
        raise UserError(
            f"ACR {login_server} answered the token exchange without a "
            "refresh_token; is this an Azure Container Registry?"
        ) from None
    return Login(
        username=ACR_TOKEN_USER,
        password=SecretStr(refresh_token),
        source="Azure credential (ACR token exchange)",
    )
