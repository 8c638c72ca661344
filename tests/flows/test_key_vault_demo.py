"""The demo flow against a real Prefect server and local ACI's Key Vault, at the vault's Azure host
name over HTTPS through a proxy that knows only that host: Key Vault's challenge, then a token of
the job identity (AZURE_CLIENT_ID) from local ACI's identity endpoint, which Key Vault takes only
as the identity's Key Vault Secrets User role allows. Without a vault the run fails and says what
to set; without the role it fails with Key Vault's ForbiddenByRbac. No secret value may appear in
the flow run's logs."""

import time

import pytest
from prefect import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.variables import Variable

from flows.key_vault_demo import flow as demo
from prefect_aci.local_aci.authorization import KEY_VAULT_SECRETS_USER
from prefect_aci.local_aci.tls import make_tls
from tests.local_azure_helpers import start_local
from tests.stand_ins import AzureHostsProxy

VAULT_NAME = "prefectacitest"
VAULT_HOST = f"{VAULT_NAME}.vault.azure.net"
VAULT = f"https://{VAULT_HOST}"
VAULT_AUDIENCE = "https://vault.azure.net"
SECRET = "kv-s3cret-value-never-logged"


@pytest.fixture
def prefect_api(prefect_server):
    with temporary_settings({PREFECT_API_URL: prefect_server}):
        yield prefect_server


def run_logs(state) -> list[str]:
    """The run's log messages as the API holds them (they arrive in batches: wait for the last)."""
    flow_run_id = state.state_details.flow_run_id
    deadline = time.monotonic() + 30
    with get_client(sync_client=True) as client:
        while True:
            logs = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
            )
            messages = [log.message for log in logs]
            if any(m.startswith("Finished in state") for m in messages) or (
                time.monotonic() > deadline
            ):
                return messages
            time.sleep(0.5)


@pytest.fixture
def vault(prefect_api, monkeypatch, tmp_path):
    """Local ACI with a deployed vault, a job identity and the Variable set. The flow's SDK reaches
    the vault at its real name: the environment sends its HTTPS through a proxy that tunnels that
    host alone to local ACI, and trusts local ACI's throwaway CA; it signs in through local ACI's
    identity endpoint as the identity AZURE_CLIENT_ID names. Call it with the vault's secrets
    (and role=None for a job identity without Key Vault Secrets User on the vault); it returns
    (local ACI, job identity, proxy)."""
    started = []

    def start(secrets: dict[str, str], role: str | None = KEY_VAULT_SECRETS_USER):
        tls = make_tls(tmp_path / "tls", names=(VAULT_HOST,))
        local = start_local(tmp_path, tls=tls)
        started.append(local)
        vault = local.add_vault(VAULT_NAME, secrets)
        job = local.add_identity("prefect-job-id")
        if role:
            local.add_role_assignment(job.principal_id, role, vault.id)
        proxy = AzureHostsProxy({f"{VAULT_HOST}:443": ("127.0.0.1", local.server.port)})
        started.append(proxy)
        env = {
            **local.identity_env(),
            **proxy.env(),
            **tls.env(),
            "AZURE_CLIENT_ID": job.client_id,
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        for name in ("AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE"):
            monkeypatch.delenv(name, raising=False)
        Variable.set("key_vault_url", f"{VAULT}/", overwrite=True)
        return local, job, proxy

    yield start
    Variable.unset("key_vault_url")
    for stand_in in started:
        stand_in.close()


def test_flow_reads_key_vault_as_the_job_identity(vault):
    local, job, proxy = vault({"prefect-aci-demo-secret": SECRET})
    state = demo.key_vault_demo(return_state=True)
    assert state.is_completed(), state.message
    assert state.result() == {"prefect-aci-demo-secret": len(SECRET)}
    requests = local.at_host(VAULT_HOST)
    # One tunnel a request (local ACI's socket closes each connection) and nothing else: the SDK
    # went over the wire, to the vault's own host name.
    assert requests
    assert [r.path for r in proxy.received] == [f"{VAULT_HOST}:443"] * len(requests)
    # The SDK met the challenge, then came back with the job identity's token for Key Vault.
    assert requests[0].headers.get("Authorization") is None
    scheme, token = requests[-1].headers["Authorization"].split(" ", 1)
    claims = local.issuer.verify(token, VAULT_AUDIENCE)
    assert scheme == "Bearer" and claims is not None
    assert (claims["appid"], claims["oid"]) == (job.client_id, job.principal_id)
    [token_request] = local.token_requests()
    assert token_request.query["client_id"] == job.client_id
    assert token_request.query["resource"] == VAULT_AUDIENCE
    logs = run_logs(state)
    assert any(f"from Key Vault {VAULT}/ as {job.client_id}" in line for line in logs)
    assert any(f"prefect-aci-demo-secret: {len(SECRET)} characters" in line for line in logs)
    assert not [line for line in logs if SECRET in line]


def test_flow_without_a_vault_fails_and_says_what_to_set(prefect_api, monkeypatch):
    monkeypatch.delenv("KEY_VAULT_URL", raising=False)
    Variable.unset("key_vault_url")
    state = demo.key_vault_demo(return_state=True)
    assert state.is_failed()
    assert "set the Prefect Variable 'key_vault_url'" in state.message


def test_missing_secret_fails_the_run_with_the_vault_error(vault):
    vault({})
    state = demo.key_vault_demo(return_state=True)
    assert state.is_failed()
    assert "SecretNotFound" in state.message


def test_job_identity_without_a_key_vault_role_fails_with_forbidden_by_rbac(vault):
    local, job, _ = vault({"prefect-aci-demo-secret": SECRET}, role=None)
    state = demo.key_vault_demo(rbac_wait_seconds=0, return_state=True)
    assert state.is_failed()
    assert "ForbiddenByRbac" in state.message
    # Refused with the job identity's own token, not for want of one.
    assert [r.query["client_id"] for r in local.token_requests()] == [job.client_id]
