"""ACR login and housekeeping without the az CLI, against local ACR (the local ACI's registry at
`<name>.azurecr.io`, tests.local_aci.acr_helpers): azure-identity's real ManagedIdentityCredential
gets the deployer's token from the local identity endpoint, our exchange posts it to ACR's
/oauth2/exchange, and our tag code lists and prunes through ACR's challenge."""

from datetime import UTC, datetime

import jwt
import pytest
from azure.identity import ManagedIdentityCredential

from image_builder.acr import ACR_SCOPE, exchange_login
from image_builder.acr_tags import TagInfo, acr_client, delete_tags, list_tags, prune_plan
from image_builder.registry import ACR_TOKEN_USER
from prefect_aci.core.errors import UserError
from prefect_aci.core.records import ImageRecord, Publication
from tests.conftest import run_builder, run_cli
from tests.local_aci.acr_helpers import (
    CLEANER,
    LOGIN_SERVER,
    NOBODY,
    PUSHER,
    REGISTRY,
    TENANT,
    LocalAcr,
    push_image,
)

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
NOT_THE_DOORS_SECRET = "not-the-identity-header"  # the endpoint answers: no identity here


@pytest.fixture(scope="module")
def local_acr(tmp_path_factory):
    local = LocalAcr(tmp_path_factory.mktemp("acr"))
    yield local
    local.close()


@pytest.fixture
def azure(local_acr, monkeypatch):
    """Local ACR, reached by its Azure names; azure-identity gets the deployer (AcrPush)."""
    for name, value in local_acr.env().items():
        monkeypatch.setenv(name, value)
    for name in AZURE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    local_acr.seen.clear()
    return local_acr


def _posted(azure: LocalAcr, path: str) -> list[dict[str, str]]:
    return [s.form for s in azure.seen if s.method == "POST" and s.path == path]


def test_exchange_turns_an_azure_token_into_acr_docker_credentials(azure):
    login = exchange_login(LOGIN_SERVER, ManagedIdentityCredential())
    assert login.username == ACR_TOKEN_USER
    refresh = jwt.decode(login.password.get_secret_value(), options={"verify_signature": False})
    assert refresh["aud"] == LOGIN_SERVER and refresh["sub"] == PUSHER.principal_id
    [token_request] = [s for s in azure.seen if s.path == "/_local/msi/token"]
    assert token_request.query["resource"] == ACR_SCOPE.removesuffix("/.default")
    [exchange] = _posted(azure, "/oauth2/exchange")
    assert set(exchange) == {"grant_type", "service", "access_token", "tenant"}
    assert exchange["grant_type"] == "access_token"
    assert exchange["service"] == LOGIN_SERVER
    assert exchange["tenant"] == TENANT  # read from the token's tid claim
    sent = jwt.decode(exchange["access_token"], options={"verify_signature": False})
    assert sent["oid"] == PUSHER.principal_id


def test_explicit_tenant_wins_over_the_tokens_claim(azure):
    # ACR refuses a token of another tenant than the one named: the named one was sent.
    with pytest.raises(UserError, match="refused the Azure token"):
        exchange_login(LOGIN_SERVER, ManagedIdentityCredential(), tenant="other-tenant")
    assert _posted(azure, "/oauth2/exchange")[0]["tenant"] == "other-tenant"


def test_refresh_token_is_not_in_the_logins_repr(azure):
    login = exchange_login(LOGIN_SERVER, ManagedIdentityCredential())
    assert login.password.get_secret_value() not in repr(login) + str(login)


def test_registry_refusing_the_token_says_which_role_is_needed(azure):
    with pytest.raises(UserError, match="needs AcrPush"):
        exchange_login(LOGIN_SERVER, azure.credential(NOBODY))


def test_no_managed_identity_says_how_to_log_in(azure, monkeypatch):
    monkeypatch.setenv("IDENTITY_HEADER", NOT_THE_DOORS_SECRET)
    with pytest.raises(UserError, match="az login") as caught:
        exchange_login(LOGIN_SERVER, ManagedIdentityCredential())
    assert "\n" not in str(caught.value)
    assert [s.path for s in azure.seen] == ["/_local/msi/token"]  # and no exchange


@pytest.mark.slow
def test_push_to_acr_without_any_azure_credential_is_one_line(tmp_path, local_acr):
    # DefaultAzureCredential, as the CLI builds it: no env service principal, no az CLI, and a
    # managed identity endpoint (local) that has no identity; IMDS is never asked. The Azure
    # credential is asked before the Docker engine, so a recorded image that was never built
    # does here.
    record = _record(tmp_path)
    local_acr.seen.clear()
    result = run_builder(
        "push",
        "--record",
        str(record),
        "--registry",
        LOGIN_SERVER,
        env={**AZURE_UNSET, **local_acr.env(), "IDENTITY_HEADER": NOT_THE_DOORS_SECRET},
        timeout=300,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [error] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert f"no Azure credential for ACR {LOGIN_SERVER}" in error
    assert (
        "AZURE_CLIENT_SECRET" in error
        and "PREFECT_ACI_ACR_USERNAME/PREFECT_ACI_ACR_PASSWORD" in error
    )
    assert "/_local/msi/token" in [s.path for s in local_acr.seen], "the endpoint was never asked"


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


def _record(folder, published: Publication | None = None):
    """An image record (of an image never built: nothing here asks the Docker engine)."""
    record = folder / "image.json"
    image = ImageRecord(
        image_id="sha256:" + "1" * 64,
        repository="prefect-aci",
        local_tags=[],
        base_image="b",
        versions={},
        published=published,
    )
    record.write_text(image.model_dump_json())
    return record


def _stocked(azure: LocalAcr, repository: str) -> dict[str, str]:
    """Five tags pushed oldest first; "pinned-old" and "new-2" are one image. Tag -> digest."""
    registry = azure.client(CLEANER)
    return {
        tag: push_image(registry, repository, tag, seed)
        for tag, seed in [
            ("old-1", "1"),
            ("old-2", "2"),
            ("pinned-old", "p"),
            ("new-1", "3"),
            ("new-2", "p"),
        ]
    }


def test_list_tags_goes_through_the_acr_challenge_newest_first(azure):
    digests = _stocked(azure, "prefect-aci")
    azure.seen.clear()
    client = acr_client(LOGIN_SERVER, ManagedIdentityCredential())
    tags = list_tags(client, "prefect-aci")
    assert [tag.name for tag in tags] == ["new-2", "new-1", "pinned-old", "old-2", "old-1"]
    assert {tag.name: tag.digest for tag in tags} == digests
    paths = [s.path for s in azure.seen if s.method == "POST"]
    assert paths[:2] == ["/oauth2/exchange", "/oauth2/token"]
    assert _posted(azure, "/oauth2/token")[0]["scope"].startswith("repository:prefect-aci:")


def test_prune_keeps_the_newest_and_never_the_pinned_digest(azure):
    digests = _stocked(azure, "pruned")
    client = acr_client(LOGIN_SERVER, azure.credential(CLEANER))
    doomed = prune_plan(
        list_tags(client, "pruned"),
        keep=1,
        pinned_digest=digests["pinned-old"],
        pinned_tags=set(),
    )
    assert sorted(tag.name for tag in doomed) == ["new-1", "old-1", "old-2"]
    delete_tags(client, "pruned", doomed)
    assert sorted(azure.upstream.tags(f"{REGISTRY}/pruned")) == ["new-2", "pinned-old"]


def test_prune_spares_tags_named_in_the_record():
    tags = [TagInfo(f"t{i}", f"sha256:{i}", datetime(2026, 11, i, tzinfo=UTC)) for i in (1, 2, 3)]
    doomed = prune_plan(tags, keep=1, pinned_digest=None, pinned_tags={"t1"})
    assert [tag.name for tag in doomed] == ["t2"]


def test_prune_keep_below_one_is_refused():
    with pytest.raises(UserError, match="at least 1"):
        prune_plan([], keep=0, pinned_digest=None, pinned_tags=set())


@pytest.mark.slow
def test_the_acr_commands_list_and_prune_what_the_record_does_not_pin(tmp_path, azure):
    # `prefect-aci azure acr ...` as a user runs it: DefaultAzureCredential finds the deployer's
    # identity (AcrPush: it may list, not delete).
    digests = _stocked(azure, "cli")
    record = _record(
        tmp_path,
        Publication(
            registry=LOGIN_SERVER, repository="cli", tags=["new-2"], digest=digests["new-2"]
        ),
    )
    env = {**AZURE_UNSET, **azure.env()}

    def acr(*args: str):
        return run_cli(
            "azure",
            "acr",
            *args,
            "--registry",
            LOGIN_SERVER,
            "--record",
            str(record),
            env=env,
            timeout=300,
        )

    listed = acr("list")
    assert listed.returncode == 0, listed.stderr
    shown = [t for t in ("new-2", "new-1", "pinned-old", "old-2", "old-1") if t in listed.stdout]
    assert sorted(shown, key=listed.stdout.index) == shown  # newest first, all of them
    assert len(shown) == 5
    planned = acr("prune", "--keep", "1", "--dry-run")
    assert planned.returncode == 0, planned.stderr
    doomed = [line.split()[2] for line in planned.stdout.splitlines() if line.startswith("would")]
    assert doomed == ["cli:new-1", "cli:old-2", "cli:old-1"]  # pinned-old shares new-2's digest
    refused = acr("prune", "--keep", "1")
    assert refused.returncode == 1
    [error] = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert "needs AcrDelete" in error
    assert sorted(azure.upstream.tags(f"{REGISTRY}/cli")) == sorted(digests)


def test_list_of_a_missing_repository_is_a_clear_error(azure):
    client = acr_client(LOGIN_SERVER, ManagedIdentityCredential())
    with pytest.raises(UserError, match="repository nope does not exist"):
        list_tags(client, "nope")


@pytest.mark.slow
def test_acr_commands_refuse_a_registry_that_is_not_acr(tmp_path):
    result = run_cli("azure", "acr", "list", "--registry", "127.0.0.1:5000", "--repository", "x")
    assert result.returncode == 1
    assert "is not an Azure Container Registry" in result.stderr
