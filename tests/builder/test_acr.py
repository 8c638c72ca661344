"""ACR login without the az CLI: azure-identity's real ManagedIdentityCredential gets a token from
a local App Service identity endpoint, and our exchange posts it to a local /oauth2/exchange."""

import pytest
from azure.identity import ManagedIdentityCredential

from image_builder.acr import ACR_SCOPE, exchange_login
from image_builder.errors import UserError
from image_builder.registry import ACR_TOKEN_USER
from tests.acr_stand_in import REFRESH_TOKEN, TENANT, AzureStandIn
from tests.conftest import run_builder

AZURE_VARIABLES = (
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_USERNAME",
    "AZURE_FEDERATED_TOKEN_FILE",
    "ACR_USERNAME",
    "ACR_PASSWORD",
)
AZURE_UNSET = dict.fromkeys(AZURE_VARIABLES)


@pytest.fixture
def azure(monkeypatch):
    stand_in = AzureStandIn()
    for name, value in stand_in.identity_env().items():
        monkeypatch.setenv(name, value)
    yield stand_in
    stand_in.close()


def test_exchange_turns_an_azure_token_into_acr_docker_credentials(azure):
    login = exchange_login(azure.host, ManagedIdentityCredential(), scheme="http")
    assert login.username == ACR_TOKEN_USER
    assert login.password.get_secret_value() == REFRESH_TOKEN
    [token_request] = azure.token_requests
    assert token_request["query"]["resource"] == ACR_SCOPE.removesuffix("/.default")
    [exchange] = azure.exchanges
    assert exchange["form"] == {
        "grant_type": "access_token",
        "service": azure.host,
        "access_token": azure.access_token,
        "tenant": TENANT,
    }


def test_explicit_tenant_wins_over_the_tokens_claim(azure):
    exchange_login(azure.host, ManagedIdentityCredential(), tenant="other-tenant", scheme="http")
    assert azure.exchanges[0]["form"]["tenant"] == "other-tenant"


def test_refresh_token_is_not_in_the_logins_repr(azure):
    login = exchange_login(azure.host, ManagedIdentityCredential(), scheme="http")
    assert REFRESH_TOKEN not in repr(login) + str(login)


def test_registry_refusing_the_token_says_which_role_is_needed(azure):
    azure.exchange_status = 401
    with pytest.raises(UserError, match="needs AcrPush"):
        exchange_login(azure.host, ManagedIdentityCredential(), scheme="http")


def test_no_managed_identity_says_how_to_log_in(monkeypatch):
    stand_in = AzureStandIn(identity_available=False)
    for name, value in stand_in.identity_env().items():
        monkeypatch.setenv(name, value)
    try:
        with pytest.raises(UserError, match="az login") as caught:
            exchange_login(stand_in.host, ManagedIdentityCredential(), scheme="http")
    finally:
        stand_in.close()
    assert "\n" not in str(caught.value)
    assert stand_in.exchanges == []


def test_push_to_acr_without_any_azure_credential_is_one_line(tmp_path, built_image):
    # DefaultAzureCredential, as the CLI builds it: no env service principal, no az CLI, and a
    # managed identity endpoint (local) that has no identity; IMDS is never asked.
    stand_in = AzureStandIn(identity_available=False)
    record = tmp_path / "image.json"
    record.write_text(built_image.model_dump_json())
    try:
        result = run_builder(
            "push",
            "--record",
            str(record),
            "--registry",
            "prefectacitest.azurecr.io",
            env={**AZURE_UNSET, **stand_in.identity_env()},
        )
    finally:
        stand_in.close()
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [error] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "no Azure credential for ACR prefectacitest.azurecr.io" in error
    assert "AZURE_CLIENT_SECRET" in error and "ACR_USERNAME/ACR_PASSWORD" in error
    assert stand_in.token_requests, "the managed identity endpoint was never asked"


def test_blank_service_principal_settings_are_one_line(tmp_path, built_image):
    record = tmp_path / "image.json"
    record.write_text(built_image.model_dump_json())
    result = run_builder(
        "push",
        "--record",
        str(record),
        "--registry",
        "prefectacitest.azurecr.io",
        env={
            **AZURE_UNSET,
            "AZURE_TENANT_ID": "t",
            "AZURE_CLIENT_ID": "",
            "AZURE_CLIENT_SECRET": "x",
        },
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [error] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "settings are incomplete" in error
