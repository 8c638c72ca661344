"""The demo flow's hold_seconds: after it has read the vault, the run stays Running that long and
says so once; without it the run returns at once. Run as a flow against a real Prefect server (a
subprocess); the vault is left out (its reading is tested in test_key_vault_demo.py)."""

import time

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.key_vault_demo import flow as demo
from tests.flows.test_key_vault_demo import run_logs

HOLD_LINE = "Holding for"


@pytest.fixture
def no_vault(prefect_process_server, monkeypatch):
    """The flow's own vault reader answers without Azure; the vault's address is set."""
    monkeypatch.setenv("KEY_VAULT_URL", "https://prefectacitest.vault.azure.net/")
    monkeypatch.setattr(
        demo, "read_from_key_vault", lambda url, names, wait: dict.fromkeys(names, "xyz")
    )
    with temporary_settings({PREFECT_API_URL: prefect_process_server}):
        yield


def test_the_run_holds_after_reading_the_vault_and_says_so_once(no_vault):
    started = time.monotonic()
    state = demo.key_vault_demo(hold_seconds=3, return_state=True)
    took = time.monotonic() - started
    assert state.is_completed(), state.message
    assert state.result() == {"prefect-aci-demo-secret": 3}
    assert took >= 3
    logs = run_logs(state)
    holds = [i for i, line in enumerate(logs) if line.startswith(HOLD_LINE)]
    read = [i for i, line in enumerate(logs) if line.startswith("Read secret")]
    assert len(holds) == 1 and "3 s" in logs[holds[0]]
    assert read and read[-1] < holds[0]


def test_without_hold_seconds_the_run_returns_at_once(no_vault):
    state = demo.key_vault_demo(return_state=True)
    assert state.is_completed(), state.message
    assert not [line for line in run_logs(state) if line.startswith(HOLD_LINE)]
