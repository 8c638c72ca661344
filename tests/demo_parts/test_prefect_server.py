"""The stack's Prefect server is not open to every web page or local user: CORS for the UI's own
origin only, CSRF tokens checked, and a random basic-auth string per
stack, kept in a 0600 file, that everything of the stack sends and `demo env` reads."""

import stat

import httpx
import pytest
from prefect import get_client
from prefect.settings import temporary_settings
from rich.console import Console

from image_builder.local_registry import free_port
from prefect_aci.demo import parts, stack
from prefect_aci.demo.flow_run import api_settings
from prefect_aci.demo.local_azure import make_local_side
from prefect_aci.demo.state import Stack
from tests.conftest import server_process


def a_stack(root, port: int = 4321) -> Stack:
    made = Stack(None, root, Console(quiet=True))
    made.state.ports.update({"prefect": port, "local-aci": 4443})
    made.state.prefix = "172.29.8"
    made.save()
    return made


def test_the_server_lets_only_its_ui_origin_read_the_api_and_checks_csrf_tokens(tmp_path):
    env = parts.server_environment(a_stack(tmp_path))
    assert env["PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS"] == "http://127.0.0.1:4321"
    assert env["PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED"] == "true"


def with_auth(root) -> Stack:
    made = a_stack(root, free_port())
    parts.write_auth_string(made)
    return made


@pytest.fixture
def auth_stack(tmp_path) -> Stack:
    return with_auth(tmp_path)


def test_the_auth_string_is_random_per_stack_and_readable_by_its_user_only(auth_stack, tmp_path):
    other = a_stack(tmp_path / "other")
    assert parts.write_auth_string(other) != auth_stack.auth_string()
    assert stat.S_IMODE(auth_stack.auth_string_file.stat().st_mode) == 0o600
    user, password = auth_stack.auth_string().split(":")
    assert user == parts.AUTH_USER and len(password) >= 24
    env = parts.server_environment(auth_stack)
    assert env["PREFECT_SERVER_API_AUTH_STRING"] == auth_stack.auth_string()


def test_deploy_all_and_demo_env_get_the_auth_string_from_its_file(auth_stack):
    side = make_local_side(
        auth_stack.local_azure,
        auth_stack.id,
        "net",
        auth_stack.state.stand_in_address,
        blob_endpoint="https://172.29.8.1:1/devstoreaccount1",
        addresses=(auth_stack.state.gateway,),
    )
    settings = parts.local_azure_settings(auth_stack, side)
    assert settings["PREFECT_API_AUTH_STRING"] == auth_stack.auth_string()
    assert settings["PREFECT_API_URL"] == auth_stack.state.network_api
    printed, _ = stack.deploy_all_settings(None, auth_stack.root)
    file = auth_stack.auth_string_file.resolve()
    assert printed["PREFECT_API_AUTH_STRING"] == f'"$(cat {file})"'
    assert auth_stack.auth_string() not in "".join(printed.values())


@pytest.fixture(scope="module")
def guarded_server(tmp_path_factory):
    """Prefect's server of this environment with the settings of a stack's server."""
    tmp_path = tmp_path_factory.mktemp("server")
    auth_stack = with_auth(tmp_path / "stack")
    port = auth_stack.state.ports["prefect"]
    with server_process(tmp_path, port, parts.server_environment(auth_stack)) as api:
        assert api == auth_stack.state.api
        yield api, auth_stack.auth_string()


@pytest.mark.slow  # a Prefect server in a subprocess
def test_a_caller_without_the_auth_string_is_refused(guarded_server):
    api, _ = guarded_server
    assert httpx.get(f"{api}/admin/version").status_code == 401


@pytest.mark.slow  # a Prefect server in a subprocess
def test_another_origin_may_not_read_the_api(guarded_server):
    api, _ = guarded_server
    ui = api.removesuffix("/api")
    preflight = {"Access-Control-Request-Method": "POST"}
    evil = httpx.options(
        f"{api}/flows/filter", headers={**preflight, "Origin": "https://evil.example"}
    )
    own = httpx.options(f"{api}/flows/filter", headers={**preflight, "Origin": ui})
    assert evil.headers.get("access-control-allow-origin") is None
    assert own.headers.get("access-control-allow-origin") == ui


@pytest.mark.slow  # a Prefect server in a subprocess
def test_a_state_change_without_a_csrf_token_is_refused(guarded_server):
    api, auth = guarded_server
    answer = httpx.post(f"{api}/flows/", json={"name": "forged"}, auth=tuple(auth.split(":")))
    assert answer.status_code == 403


@pytest.mark.slow  # a Prefect server in a subprocess
def test_prefects_client_with_the_stacks_settings_gets_in(guarded_server):
    api, auth = guarded_server
    with temporary_settings(api_settings(api, auth)), get_client(sync_client=True) as client:
        assert client.create_flow_from_name("from-the-client")
