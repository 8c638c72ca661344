"""`prefect-aci demo up`, as `make demo` runs it: the real azure-container-instance worker takes the
demo's flow run, submits it as an ARM deployment to the local ACI, the container group runs our
image under tini with the job identity, the flow reads its secret from the local Key Vault, the
worker watches the group to its exit code and deletes it. Then the UI, opened in headless
Chromium, shows the run."""

import os
import shlex
import subprocess
import sys

from prefect import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.settings import temporary_settings

from prefect_aci.core.names import DEMO_SECRET
from prefect_aci.core.paths import DEMO_DIR
from prefect_aci.core.records import AzureRecord, read_record
from prefect_aci.demo.stack import server_container, stack_id
from prefect_aci.local_aci.groups import LABEL
from tests.browser import open_flow_run_page
from tests.demo.conftest import SESSION_SWEEP_EVERY, demo


def test_demo_flow_run_completes_through_the_aci_worker(stack):
    assert stack.up.returncode == 0, stack.up.stderr[-3000:]
    assert f"flow run {stack.state.flow_run_id}: Completed" in stack.up.stderr
    assert "submitting flow run" in stack.up.stderr  # the AzureContainerWorker took it


def test_demo_flow_ran_under_tini_and_read_key_vault_as_the_job_identity(stack):
    output = stack.up.stderr
    assert "Process 1 of this container is /usr/bin/tini" in output
    vault = stack.record.key_vault_uri
    assert (
        f"Reading 1 secret(s) from Key Vault {vault} as {stack.record.job_identity_client_id}"
        in output
    )
    assert f"Read secret {DEMO_SECRET}: 24 characters (value not logged)" in output


def test_demo_flow_code_came_from_blob_storage_with_an_identity_token(stack):
    assert "Executing deployment step: pull_with_block" in stack.up.stderr
    assert "Deployment step 'pull_with_block' completed successfully" in stack.up.stderr
    # Azurite runs in OAuth mode: the pull carried the job identity's bearer token.
    assert stack.record.blob_endpoint.startswith("https://")


def test_no_secret_reaches_any_log(stack, docker_client):
    secret = stack.demo_secret()
    assert secret not in stack.up.stdout + stack.up.stderr
    with temporary_settings(stack.api_settings), get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[stack.state.flow_run_id]))
        )
    assert logs and not [log for log in logs if secret in log.message]
    for container in docker_client.containers.list(
        all=True, filters={"label": f"{LABEL}.stack={stack_id(stack.folder)}"}
    ):
        assert secret not in container.logs().decode(errors="replace"), container.name


def test_the_worker_deleted_the_flow_runs_container_group(stack):
    assert stack.group_gone(f"key-vault-demo-{stack.state.flow_run_id}")
    groups = stack.aci().container_groups.list_by_resource_group(stack.record.resource_group)
    workers = {stack.state.worker_group, stack.state.standby_worker_group} - {None}
    assert {group.name for group in groups} == workers


def test_demo_image_came_through_the_local_registry(stack, built_image):
    assert stack.image().startswith("127.0.0.1:")
    assert "@sha256:" in stack.image()


def test_demo_ends_with_the_ui_and_the_flow_run_page(stack):
    assert f"Prefect UI:     {stack.ui}" in stack.up.stderr
    assert f"This flow run:  {stack.ui}/runs/flow-run/{stack.state.flow_run_id}" in stack.up.stderr


def test_status_says_what_runs_and_where(stack):
    status = demo("status", state_dir=stack.folder, timeout=120)
    assert status.returncode == 0, status.stderr
    lines = status.stderr.splitlines()
    assert any("running" in line and f"UI {stack.ui}, API {stack.api}" in line for line in lines)
    for part in ("registry", "azurite", "database", "local ACI", "ACI worker"):
        assert any("running" in line and part in line for line in lines), (part, lines)
    assert any(f"{stack.ui}/runs/flow-run/{stack.state.flow_run_id}" in line for line in lines)


def test_the_ui_shows_the_completed_run_and_its_logs_in_a_browser(stack, tmp_path):
    page = open_flow_run_page(
        stack.ui,
        stack.state.flow_run_id,
        expected_state="Completed",
        expected_logs=[
            "Process 1 of this container is /usr/bin/tini",
            f"Read secret {DEMO_SECRET}: 24 characters (value not logged)",
        ],
        screenshot=tmp_path / "flow-run.png",
        auth_string=stack.auth_string(),
    )
    assert page.error is None, page
    assert page.state == "Completed", page
    assert not page.api_error_shown, page
    assert page.api_answers, page
    assert len(page.logs_found) == 2, page


def test_the_browser_check_fails_for_a_page_without_that_run(stack, tmp_path):
    page = open_flow_run_page(
        stack.ui,
        "00000000-0000-0000-0000-000000000000",
        expected_state="Completed",
        expected_logs=["Process 1 of this container is /usr/bin/tini"],
        screenshot=tmp_path / "no-run.png",
        timeout=20,
        auth_string=stack.auth_string(),
    )
    assert page.error is not None and page.state is None and page.logs_found == []


def test_the_ui_without_the_auth_string_shows_no_run(stack, tmp_path):
    """The stack's server asks every caller for its auth string: a browser without it is sent to
    the login page and sees no run."""
    page = open_flow_run_page(
        stack.ui,
        stack.state.flow_run_id,
        expected_state="Completed",
        expected_logs=[],
        screenshot=tmp_path / "no-login.png",
        timeout=20,
    )
    assert page.error is not None and page.state is None, page


def test_the_stack_is_not_the_users(stack):
    assert server_container(stack.folder) != server_container(DEMO_DIR)
    assert stack_id(stack.folder) != stack_id(DEMO_DIR)


def test_demo_env_points_deploy_all_at_the_stacks_local_azure(stack, tmp_path):
    """`eval "$(prefect-aci demo env)"`, then deploy-all as the line it prints says: the same
    deployment again, on the stack's local Azure, from a shell whose own Azure sign-in is unset;
    no secret is printed."""
    env = demo("env", state_dir=stack.folder, timeout=60)
    assert env.returncode == 0, env.stderr
    assert stack.side.deployer_secret not in env.stdout
    assert stack.demo_secret() not in env.stdout
    [line] = [line for line in env.stdout.splitlines() if "make deploy-all" in line]
    flags = shlex.split(line.split("DEPLOY_ALL_FLAGS=", 1)[1])[0]
    outputs = tmp_path / "azure.json"
    flags = flags.replace(str(stack.folder / "azure.json"), str(outputs))
    script = (
        f'{env.stdout}\ncd "{tmp_path}" && "{sys.executable}" -m prefect_aci deploy-all {flags}'
    )
    done = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        timeout=600,
        env={
            **os.environ,
            "AZURE_CLIENT_SECRET": "this-machine-s-own-never-used",
            "PREFECT_API_KEY": "pnu_this-machine-s-own-cloud-key",
        },
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # register is idempotent with the automation and the sweep's deployment: one of each.
    assert "unchanged    automation 'prefect-aci: crash runs of" in done.stderr, done.stderr[-3000:]
    assert (
        f"unchanged    deployment 'prefect-aci-sweep/scheduled' (every {SESSION_SWEEP_EVERY})"
        in done.stderr
    ), done.stderr[-3000:]
    # The shell's own Prefect Cloud key never reaches the local worker.
    worker = stack.aci().container_groups.get(stack.record.resource_group, stack.state.worker_group)
    names = {v.name for c in worker.containers for v in c.environment_variables or []}
    assert "PREFECT_API_AUTH_STRING" in names and "PREFECT_API_KEY" not in names
    again = read_record(outputs, AzureRecord)
    assert again.key_vault_name == stack.record.key_vault_name
    assert again.job_identity_client_id == stack.record.job_identity_client_id
