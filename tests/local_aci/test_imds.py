"""IMDS's token endpoint refuses what IMDS refuses, before it looks for an identity: no
`Metadata: true` header, no api-version, no resource, parameters that are not IMDS's."""

import pytest
from fastapi.testclient import TestClient

from prefect_aci.local_aci.app import LocalAci, imds_app

TOKEN = "/metadata/identity/oauth2/token"


@pytest.fixture
def imds() -> TestClient:
    # Every request here is refused before the stand-in needs its Azure or its groups.
    return TestClient(imds_app(LocalAci(None, None, None, None, "secret")))


def test_the_metadata_header_is_required_with_imds_documented_error(imds):
    answer = imds.get(
        TOKEN, params={"api-version": "2018-02-01", "resource": "https://vault.azure.net"}
    )
    assert answer.status_code == 400
    assert answer.json() == {
        "error": "bad_request_102",
        "error_description": "Required metadata header not specified",
    }


def test_api_version_and_resource_are_required(imds):
    headers = {"Metadata": "true"}
    answer = imds.get(TOKEN, params={"resource": "https://vault.azure.net"}, headers=headers)
    # IMDS's documented answer without a version: its message and the newest versions.
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("Bad request. api-version was not specified")
    assert answer.json()["newest-versions"]
    answer = imds.get(TOKEN, params={"api-version": "2018-02-01"}, headers=headers)
    assert answer.status_code == 400 and "audience" in answer.json()["error_description"]


def test_parameters_of_other_identity_endpoints_are_refused(imds):
    params = {
        "api-version": "2018-02-01",
        "resource": "https://vault.azure.net",
        "principal_id": "00000000-0000-0000-0000-000000000000",  # App Service's, not IMDS's
    }
    answer = imds.get(TOKEN, params=params, headers={"Metadata": "true"})
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_request"
    assert "principal_id" in answer.json()["error_description"]
