"""The pool's base job template defaults, checked against prefect-azure's own
AzureContainerVariables: a misspelt key or a wrong type fails here, not in a flow run."""

import json
import uuid

import pytest
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
from prefect_azure.workers.container_instance import AzureContainerVariables

from blocks.inputs import RegistrationSettings
from blocks.work_pool import FIXED, base_job_template, check_defaults, pool_defaults
from prefect_aci.core.errors import UserError
from prefect_aci.core.names import SECRET_ENV_NAME
from prefect_aci.core.paths import PROJECT_ROOT
from prefect_aci.core.records import AzureRecord
from prefect_aci.core.settings import load
from tests.local_aci.arm_helpers import template_outputs

AZURE = AzureRecord.model_validate(template_outputs(str(uuid.uuid4()), "prefect-aci"))
REFERENCE = "prefectacr1.azurecr.io/prefect-aci@sha256:" + "4" * 64


def test_every_default_is_a_worker_variable_of_the_right_type():
    defaults = pool_defaults(AZURE, REFERENCE, str(uuid.uuid4()), AZURE.registry_login_server)
    assert set(defaults) <= set(AzureContainerVariables.model_fields)
    check_defaults(defaults)  # raises on a wrong type
    template = base_job_template(AZURE, REFERENCE, str(uuid.uuid4()), None)
    properties = template["variables"]["properties"]
    assert properties["image"]["default"] == REFERENCE
    assert template["job_configuration"]["identities"] == [AZURE.job_identity_id]


def test_who_a_run_is_and_where_it_runs_are_not_variables():
    """A deployment or flow run may not name another identity (the worker's), registry
    credential, subscription, resource group, subnet or credentials block: those are written into
    the job configuration, and no variable of that name exists to override them."""
    block = str(uuid.uuid4())
    template = base_job_template(AZURE, REFERENCE, block, AZURE.registry_login_server)
    properties, job = template["variables"]["properties"], template["job_configuration"]
    for name in FIXED:
        assert name not in properties, name
        assert "{{" not in str(job[name]), (name, job[name])
    assert set(template["variables"].get("required", [])) <= set(properties)
    assert job["identities"] == [AZURE.job_identity_id]
    assert job["subnet_ids"] == [AZURE.subnet_id]
    assert job["image_registry"] == {
        "registry_url": AZURE.registry_login_server,
        "identity": AZURE.job_identity_id,
    }
    assert job["aci_credentials"] == {"$ref": {"block_document_id": block}}
    # What a run may still choose stays a variable.
    assert {"image", "command", "env", "cpu", "memory"} <= set(properties)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"identites": ["x"]}, "unknown ACI job variables: identites"),
        ({"cpu": "lots"}, "work pool default cpu"),
        ({"task_start_timeout_seconds": "ten minutes"}, "work pool default task_start_timeout"),
        ({"image_registry": {"registry_url": "x.azurecr.io"}}, "work pool default image_registry"),
    ],
)
def test_a_misspelt_key_or_a_wrong_type_is_refused(change, expected):
    defaults = pool_defaults(AZURE, REFERENCE, str(uuid.uuid4()), None)
    with pytest.raises(UserError, match=expected):
        check_defaults({**defaults, **change})


def test_flow_runs_use_the_job_identity_without_the_imds_probe(monkeypatch):
    """DefaultAzureCredential probes IMDS for 1 s before it uses a managed identity unless
    AZURE_TOKEN_CREDENTIALS names ManagedIdentityCredential; a starting group can be slower."""
    env = pool_defaults(AZURE, REFERENCE, str(uuid.uuid4()), None)["env"]
    assert env["AZURE_TOKEN_CREDENTIALS"] == "ManagedIdentityCredential"
    monkeypatch.setenv("AZURE_TOKEN_CREDENTIALS", env["AZURE_TOKEN_CREDENTIALS"])
    monkeypatch.setenv("AZURE_CLIENT_ID", env["AZURE_CLIENT_ID"])
    assert [type(c) for c in DefaultAzureCredential().credentials] == [ManagedIdentityCredential]


def test_the_users_pool_env_joins_ours_and_ours_win():
    template = base_job_template(
        AZURE, "img", str(uuid.uuid4()), None, {"TEAM": "data", "AZURE_CLIENT_ID": "other"}
    )
    env = template["variables"]["properties"]["env"]["default"]
    assert env["TEAM"] == "data"
    assert env["AZURE_CLIENT_ID"] == AZURE.job_identity_client_id


@pytest.mark.parametrize(
    "name", ["DB_PASSWORD", "api_token", "STRIPE_KEY", "DSN_CONNECTION_STRING"]
)
def test_register_refuses_a_secret_in_the_pools_plain_env(monkeypatch, name):
    """The pool's env reaches ACI as plain values: secret-like names are refused with one line
    that says to use Key Vault."""
    monkeypatch.setenv("PREFECT_ACI_POOL_ENV", json.dumps({"TEAM": "data", name: "x"}))
    with pytest.raises(UserError) as caught:
        load(RegistrationSettings)
    assert str(caught.value).startswith(f"PREFECT_ACI_POOL_ENV names {name}")
    assert "Key Vault" in str(caught.value)
    monkeypatch.setenv("PREFECT_ACI_POOL_ENV", json.dumps({"TEAM": "data", "KEY_VAULT_URL": "u"}))
    assert load(RegistrationSettings).pool_env["TEAM"] == "data"


def test_the_checkov_check_and_register_agree_on_secret_names():
    checks = (PROJECT_ROOT / "arm" / "checkov_checks" / "container_groups.py").read_text()
    assert f'r"{SECRET_ENV_NAME}"' in checks


def test_flow_runs_send_heartbeats_at_the_registered_frequency():
    """Prefect's engine reads PREFECT_FLOWS_HEARTBEAT_FREQUENCY (settings flows.heartbeat_frequency)
    for its heartbeat events, which register's automation watches: the pool's env carries it, and
    a user's pool env cannot change it under the automation's window."""
    settings = RegistrationSettings(heartbeat_seconds=45)
    template = base_job_template(
        AZURE, "img", str(uuid.uuid4()), None, {"TEAM": "data"}, settings.heartbeat_seconds
    )
    env = template["variables"]["properties"]["env"]["default"]
    assert env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "45"
    assert (
        pool_defaults(AZURE, "img", "b", None)["env"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "60"
    )


def test_a_pool_env_that_is_not_json_is_one_line(monkeypatch):
    monkeypatch.setenv("PREFECT_ACI_POOL_ENV", "{TEAM: data")
    with pytest.raises(UserError, match=r"^PREFECT_ACI_POOL_ENV must be JSON"):
        load(RegistrationSettings)
