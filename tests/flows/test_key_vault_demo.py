"""The demo flow against a real Prefect server: Key Vault at its Azure host name, over HTTPS through
a proxy that knows only that host (challenge, managed identity token for the job identity); without
a vault the run fails and says what to set. No secret value may appear in the flow run's logs."""

import time

import pytest
from prefect import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.variables import Variable

from flows.key_vault_demo import flow as demo
from prefect_aci.local_aci.tls import make_tls
from tests.acr_stand_in import AzureStandIn
from tests.key_vault_stand_in import VAULT, VAULT_HOST, KeyVaultStandIn
from tests.stand_ins import AzureHostsProxy

JOB_CLIENT_ID = "22222222-3333-4444-5555-666666666666"
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
    """Stand-ins for the job identity and a vault, the Variable set. The flow's SDK reaches the
    vault at its real name: the environment sends its HTTPS through a proxy that tunnels that
    host alone to the stand-in, and trusts the stand-in's throwaway CA. Call it with the vault's
    secrets; it returns (identity, vault, proxy)."""
    started = []

    def start(secrets: dict[str, str]):
        identity = AzureStandIn()
        tls = make_tls(tmp_path / "tls", names=(VAULT_HOST,))
        stand_in = KeyVaultStandIn(bearer=identity.access_token, secrets=secrets, tls=tls)
        proxy = AzureHostsProxy({f"{VAULT_HOST}:443": ("127.0.0.1", stand_in.port)})
        started.extend([identity, stand_in, proxy])
        env = {
            **identity.identity_env(),
            **proxy.env(),
            "REQUESTS_CA_BUNDLE": str(tls.bundle),
            "AZURE_CLIENT_ID": JOB_CLIENT_ID,
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        for name in ("AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE"):
            monkeypatch.delenv(name, raising=False)
        Variable.set("key_vault_url", f"{VAULT}/", overwrite=True)
        return identity, stand_in, proxy

    yield start
    Variable.unset("key_vault_url")
    for stand_in in started:
        stand_in.close()


def test_flow_reads_key_vault_as_the_job_identity(vault):
    identity, vault, proxy = vault({"prefect-aci-demo-secret": SECRET})
    state = demo.key_vault_demo(return_state=True)
    assert state.is_completed(), state.message
    assert state.result() == {"prefect-aci-demo-secret": len(SECRET)}
    # One tunnel a request (the stand-in closes each connection) and nothing else: the SDK went
    # over the wire, to the vault's own host name.
    assert [r.path for r in proxy.received] == [f"{VAULT_HOST}:443"] * len(vault.requests)
    # The SDK met the challenge, then came back with the managed identity's token.
    assert vault.requests[0]["authorization"] is None
    assert vault.requests[-1]["authorization"] == f"Bearer {identity.access_token}"
    assert identity.token_requests[0]["query"]["client_id"] == JOB_CLIENT_ID
    assert identity.token_requests[0]["query"]["resource"] == "https://vault.azure.net"
    logs = run_logs(state)
    assert any(f"from Key Vault {VAULT}/ as {JOB_CLIENT_ID}" in line for line in logs)
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
    assert "SecretNotFound" in state.message or "not found" in str(state.message).lower()
