"""Tokens as Microsoft Entra ID issues them to managed identities; the stand-ins accept only theirs,
for their audience, still valid."""

import jwt
import pytest

from prefect_aci.local_aci.tokens import TokenIssuer, make_signing_key


@pytest.fixture
def issuer(tmp_path) -> TokenIssuer:
    make_signing_key(tmp_path / "key.pem")
    return TokenIssuer(tmp_path / "key.pem", "tenant-1")


def test_a_token_carries_azures_claims_and_verifies_for_its_audience(issuer):
    issued = issuer.issue("https://vault.azure.net", "client-1", "principal-1", "/mirid")
    claims = issuer.verify(issued.token, "https://vault.azure.net")
    assert claims["oid"] == "principal-1" and claims["appid"] == "client-1"
    assert claims["iss"] == "https://sts.windows.net/tenant-1/" and claims["idtyp"] == "app"
    assert issuer.verify(issued.token, "https://management.azure.com") is None


def test_a_token_signed_by_another_key_is_refused(issuer, tmp_path):
    make_signing_key(tmp_path / "other.pem")
    other = TokenIssuer(tmp_path / "other.pem", "tenant-1")
    forged = other.issue("https://vault.azure.net", "client-1", "principal-1").token
    assert issuer.verify(forged, "https://vault.azure.net") is None
    unsigned = jwt.encode({"aud": "https://vault.azure.net"}, "k" * 32, algorithm="HS256")
    assert issuer.verify(unsigned, "https://vault.azure.net") is None
