"""On the running stack: the Prefect server refuses a caller without its auth string (another
page's, another local user's) and a state change without a CSRF token, Azurite
refuses its published development key, and a container of another Docker network cannot reach
Azurite's door on the stack's network."""

import httpx
import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient

from prefect_aci.demo import azurite

# A TLS handshake with whatever answers at the door: Azurite completes it, a closed door not.
PROBE = """
import socket, ssl
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
try:
    with socket.create_connection(({host!r}, {port}), timeout=5) as raw:
        with context.wrap_socket(raw):
            print("answered")
except OSError as exc:
    print(f"closed ({{type(exc).__name__}})")
"""


def test_a_caller_without_the_auth_string_is_refused(stack):
    """Reads need the auth string (a POST without a CSRF token is refused before it is read)."""
    version = f"{stack.api}/admin/version"
    assert httpx.get(version).status_code == 401
    assert httpx.get(version, auth=("prefect-aci", "guessed")).status_code == 401
    # A page of another origin is turned away too.
    assert httpx.get(version, headers={"Origin": "https://evil.example"}).status_code == 401
    user, password = stack.auth_string().split(":", 1)
    assert httpx.get(version, auth=(user, password)).status_code == 200


def test_a_forged_state_change_without_a_csrf_token_is_refused(stack):
    user, password = stack.auth_string().split(":", 1)
    answer = httpx.post(f"{stack.api}/flows/", json={"name": "forged"}, auth=(user, password))
    assert answer.status_code == 403


def test_azurites_published_development_key_opens_nothing(stack):
    published = {"account_name": azurite.ACCOUNT, "account_key": azurite.ACCOUNT_KEY}
    account = stack.record.blob_endpoint.rstrip("/")
    client = BlobServiceClient(
        account, credential=published, connection_verify=str(stack.side.tls.bundle)
    )
    with pytest.raises(HttpResponseError) as refused:
        client.create_container("stolen")
    # Azurite refuses a signature made with another key (400 InvalidAuthenticationInfo here,
    # 403 AuthenticationFailed on Storage): either way, no container is made.
    assert refused.value.status_code in (400, 403)
    assert refused.value.error_code in (
        "InvalidAuthenticationInfo",
        "AuthenticationFailed",
        "AuthorizationFailure",
    )


def test_a_container_of_another_network_cannot_reach_azurite(stack, docker_client, built_image):
    host, port = stack.state.gateway, stack.state.ports["azurite-gate"]
    output = docker_client.containers.run(
        built_image.image_id,
        ["python", "-c", PROBE.format(host=host, port=port)],
        entrypoint=[],
        network="bridge",
        remove=True,
    )
    assert output.decode().startswith("closed"), output
