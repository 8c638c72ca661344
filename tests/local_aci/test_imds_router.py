"""The stand-in takes the IMDS router's word for who called only with its stack's router secret:
another container on the shared link-local network may take the router's address, not the
secret. The router reads each stack's secret from that stack's stand-in container."""

import pytest
from fastapi.testclient import TestClient

from prefect_aci.local_aci import imds_router
from prefect_aci.local_aci.app import LocalAci, imds_app
from prefect_aci.local_aci.config import LABEL
from prefect_aci.local_aci.tokens import TokenIssuer, make_signing_key
from tests.local_azure_helpers import DEPLOYER_IDENTITY, local_azure

TOKEN = "/metadata/identity/oauth2/token"
QUERY = {"api-version": "2018-02-01", "resource": "https://vault.azure.net"}
CALLER = "169.254.169.7"
SECRET = "router-secret-of-the-tests"


class OneCaller:
    """Groups as IMDS asks them: the caller at CALLER carries the deployer's identity."""

    def identities_of_address(self, address: str) -> list[str]:
        return [DEPLOYER_IDENTITY.resource_id] if address == CALLER else []


@pytest.fixture
def from_router(tmp_path) -> TestClient:
    """IMDS of a stand-in with a router secret, asked from the router's address."""
    config = local_azure()
    make_signing_key(tmp_path / "signing-key.pem")
    issuer = TokenIssuer(tmp_path / "signing-key.pem", config.tenant_id)
    aci = LocalAci(config, OneCaller(), None, issuer, "deployer-secret")
    aci.router_secret = SECRET
    return TestClient(imds_app(aci), client=(imds_router.ADDRESS, 40000))


def ask(client: TestClient, **headers: str):
    return client.get(
        TOKEN,
        params=QUERY,
        headers={"Metadata": "true", imds_router.CALLER_HEADER: CALLER, **headers},
    )


def test_the_routers_word_without_its_secret_is_not_taken(from_router):
    answer = ask(from_router)
    assert answer.status_code == 400
    assert answer.json()["error_description"] == "Identity not found"


def test_the_routers_word_with_a_wrong_secret_is_not_taken(from_router):
    answer = ask(from_router, **{imds_router.ROUTER_SECRET_HEADER: "guessed"})
    assert answer.status_code == 400


def test_the_routers_word_with_the_stacks_secret_gets_the_callers_token(from_router):
    answer = ask(from_router, **{imds_router.ROUTER_SECRET_HEADER: SECRET})
    assert answer.status_code == 200, answer.text
    assert answer.json()["client_id"] == DEPLOYER_IDENTITY.client_id


class Container:
    def __init__(self, stack: str, role: str, address: str, env: list[str]) -> None:
        self.labels = {f"{LABEL}.stack": stack, f"{LABEL}.role": role}
        self.attrs = {
            "Config": {"Env": env},
            "NetworkSettings": {"Networks": {imds_router.NETWORK: {"IPAddress": address}}},
        }


class Engine:
    def __init__(self, *containers: Container) -> None:
        self.members = list(containers)
        self.containers = self

    def list(self, **kwargs) -> list[Container]:
        return self.members


def test_the_router_finds_the_callers_stand_in_and_its_secret():
    engine = Engine(
        Container("a", "group", CALLER, []),
        Container("a", "stand-in", "169.254.169.2", [f"{imds_router.ROUTER_SECRET_ENV}=sa"]),
        Container("b", "stand-in", "169.254.169.3", [f"{imds_router.ROUTER_SECRET_ENV}=sb"]),
    )
    assert imds_router.stand_in_for(engine, CALLER) == ("169.254.169.2", "sa")
    assert imds_router.stand_in_for(engine, "169.254.169.99") is None
