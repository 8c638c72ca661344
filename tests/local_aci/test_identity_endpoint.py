"""The stack's App Service-style identity endpoint, as azure-identity's ManagedIdentityCredential
(MSAL underneath) calls it: the deployer's token by default, and, as App Service does for a
user-assigned identity, the token of another identity the local Azure knows when the caller
names it by client id, object id or resource id; an identity it does not know is App Service's
400."""

import httpx
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ManagedIdentityCredential

from tests.local_azure_helpers import DEPLOYER_IDENTITY, start_local

VAULT_AUDIENCE = "https://vault.azure.net"


@pytest.fixture
def local(tmp_path, monkeypatch):
    found = start_local(tmp_path)
    for name, value in found.identity_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AZURE_CLIENT_ID", raising=False)
    yield found
    found.close()


def claims_of(local, credential: ManagedIdentityCredential) -> dict:
    token = credential.get_token(f"{VAULT_AUDIENCE}/.default").token
    claims = local.issuer.verify(token, VAULT_AUDIENCE)
    assert claims is not None, "a token the local Azure did not issue for Key Vault"
    return claims


def test_without_an_identity_named_the_token_is_the_deployers(local):
    local.add_identity("prefect-job-id")  # another identity the local Azure knows
    claims = claims_of(local, ManagedIdentityCredential())
    assert (claims["appid"], claims["oid"]) == (
        DEPLOYER_IDENTITY.client_id,
        DEPLOYER_IDENTITY.principal_id,
    )


@pytest.mark.parametrize(
    ("how", "parameter"),
    [("client_id", "client_id"), ("object_id", "object_id"), ("resource_id", "mi_res_id")],
)
def test_a_deployed_identity_named_by_any_of_its_ids_gets_its_own_token(local, how, parameter):
    job = local.add_identity("prefect-job-id")
    value = {"client_id": job.client_id, "object_id": job.principal_id}.get(how, job.resource_id)
    claims = claims_of(local, ManagedIdentityCredential(identity_config={how: value}))
    assert (claims["appid"], claims["oid"], claims["xms_mirid"]) == (
        job.client_id,
        job.principal_id,
        job.resource_id,
    )
    [request] = local.token_requests()
    assert request.query[parameter] == value
    assert request.query["resource"] == VAULT_AUDIENCE


def test_an_identity_the_local_azure_does_not_know_is_app_services_400(local):
    credential = ManagedIdentityCredential(client_id="00000000-0000-4000-8000-00000000dead")
    with pytest.raises(ClientAuthenticationError, match="Unable to load the proper Managed"):
        credential.get_token(f"{VAULT_AUDIENCE}/.default")


def test_without_the_stacks_secret_no_identity_gets_a_token(local, monkeypatch):
    job = local.add_identity("prefect-job-id")
    monkeypatch.setenv("IDENTITY_HEADER", "not-the-secret")
    with pytest.raises(ClientAuthenticationError):
        ManagedIdentityCredential(client_id=job.client_id).get_token(f"{VAULT_AUDIENCE}/.default")
    assert [r.query["client_id"] for r in local.token_requests()] == [job.client_id]


def test_an_identity_named_twice_over_is_refused(local):
    job = local.add_identity("prefect-job-id")
    query = {
        "api-version": "2019-08-01",
        "resource": VAULT_AUDIENCE,
        "client_id": job.client_id,
        "mi_res_id": job.resource_id,
    }
    answer = httpx.get(
        local.identity_env()["IDENTITY_ENDPOINT"],
        params=query,
        headers={"X-IDENTITY-HEADER": local.identity_env()["IDENTITY_HEADER"]},
    )
    assert answer.status_code == 400
    assert "not several" in answer.json()["error_description"]
