"""Users deploy their own flows the way Prefect users do: `prefect deploy` with the prefect.yaml
beside the demo flow (pull step from the blob container, the ACI pool, the image reference). The
deployment it makes runs through the ACI worker on the local stack."""

import os
import subprocess
import sys

from prefect import get_client
from prefect.client.schemas.objects import StateType
from prefect.deployments import run_deployment
from prefect.settings import temporary_settings

from prefect_aci.core.names import FLOW_CODE_BLOCK, FLOW_NAME
from prefect_aci.core.paths import PROJECT_ROOT


def test_prefect_deploy_with_the_shipped_prefect_yaml_runs_on_the_aci_pool(stack):
    env = {
        **os.environ,
        **stack.api_env,
        "PREFECT_ACI_IMAGE": stack.image(),
        "PREFECT_CLI_PROMPT": "false",
    }
    deployed = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"],
        cwd=PROJECT_ROOT / "flows",
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
    name = f"{FLOW_NAME}/from-prefect-yaml"
    with temporary_settings(stack.api_settings):
        with get_client(sync_client=True) as client:
            deployment = client.read_deployment_by_name(name)
        assert deployment.work_pool_name == stack.record.work_pool_name
        assert deployment.job_variables == {"image": stack.image()}
        [pull] = deployment.pull_steps
        assert pull["prefect.deployments.steps.pull_with_block"]["block_document_name"] == (
            FLOW_CODE_BLOCK
        )
        flow_run = run_deployment(name, timeout=600)
    assert flow_run.state.type == StateType.COMPLETED, flow_run.state
