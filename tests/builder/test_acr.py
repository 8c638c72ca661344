"""ACR login without the az CLI: azure-identity's real ManagedIdentityCredential gets a token from
a local App Service identity endpoint, and our exchange posts it to a local /oauth2/exchange."""

from datetime import UTC, datetime

import pytest
from azure.identity import ManagedIdentityCredential

from image_builder.acr import ACR_SCOPE, exchange_login
from image_builder.acr_tags import TagInfo, acr_client, delete_tags, list_tags, prune_plan
from image_builder.registry import ACR_TOKEN_USER
from prefect_aci.core.errors import UserError
from tests.acr_stand_in import ACR_SERVICE, REFRESH_TOKEN, TENANT, AzureStandIn
from tests.conftest import run_builder, run_cli

AZURE_VARIABLES = (
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_USERNAME",
    "AZURE_FEDERATED_TOKEN_FILE",
    "PREFECT_ACI_ACR_USERNAME",
    "PREFECT_ACI_ACR_PASSWORD",
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
    assert (
        "AZURE_CLIENT_SECRET" in error
        and "PREFECT_ACI_ACR_USERNAME/PREFECT_ACI_ACR_PASSWORD" in error
    )
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


DIGEST = "sha256:" + "a" * 64


def _stocked(azure: AzureStandIn) -> None:
    for day, (tag, digest) in enumerate(
        [
            ("old-1", "sha256:" + "1" * 64),
            ("old-2", "sha256:" + "2" * 64),
            ("pinned-old", DIGEST),
            ("new-1", "sha256:" + "3" * 64),
            ("new-2", "sha256:" + "4" * 64),
        ],
        start=1,
    ):
        azure.add_tag("prefect-aci", tag, digest, f"2026-11-{day:02d}T10:00:00Z")


def test_list_tags_goes_through_the_acr_challenge_newest_first(azure):
    _stocked(azure)
    client = acr_client(ACR_SERVICE, ManagedIdentityCredential(), transport=azure.transport())
    tags = list_tags(client, "prefect-aci")
    assert [tag.name for tag in tags] == ["new-2", "new-1", "pinned-old", "old-2", "old-1"]
    assert tags[2].digest == DIGEST
    paths = [exchange["path"] for exchange in azure.exchanges]
    assert paths[:2] == ["/oauth2/exchange", "/oauth2/token"]
    assert azure.exchanges[1]["form"]["scope"].startswith("repository:prefect-aci:")


def test_prune_keeps_the_newest_and_never_the_pinned_digest(azure):
    _stocked(azure)
    client = acr_client(ACR_SERVICE, ManagedIdentityCredential(), transport=azure.transport())
    doomed = prune_plan(
        list_tags(client, "prefect-aci"), keep=2, pinned_digest=DIGEST, pinned_tags=set()
    )
    delete_tags(client, "prefect-aci", doomed)
    assert sorted(azure.deleted) == ["old-1", "old-2"]
    assert sorted(t["name"] for t in azure.tags["prefect-aci"]) == ["new-1", "new-2", "pinned-old"]


def test_prune_spares_tags_named_in_the_record():
    tags = [TagInfo(f"t{i}", f"sha256:{i}", datetime(2026, 11, i, tzinfo=UTC)) for i in (1, 2, 3)]
    doomed = prune_plan(tags, keep=1, pinned_digest=None, pinned_tags={"t1"})
    assert [tag.name for tag in doomed] == ["t2"]


def test_prune_keep_below_one_is_refused():
    with pytest.raises(UserError, match="at least 1"):
        prune_plan([], keep=0, pinned_digest=None, pinned_tags=set())


def test_list_of_a_missing_repository_is_a_clear_error(azure):
    client = acr_client(ACR_SERVICE, ManagedIdentityCredential(), transport=azure.transport())
    with pytest.raises(UserError, match="repository nope does not exist"):
        list_tags(client, "nope")


@pytest.mark.slow
def test_acr_commands_refuse_a_registry_that_is_not_acr(tmp_path):
    result = run_cli("azure", "acr", "list", "--registry", "127.0.0.1:5000", "--repository", "x")
    assert result.returncode == 1
    assert "is not an Azure Container Registry" in result.stderr
