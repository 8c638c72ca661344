"""Names that more than one stage uses: defined once here.

The ARM template (its parameter defaults and secret names) and the uploaded flow file
(`flows/key_vault_demo/flow.py`, which must stay self-contained) repeat some of them; tests check
that they agree with this module.
"""

WORK_POOL_TYPE = "azure-container-instance"
DEFAULT_WORK_POOL = "aci-pool"
# Blocks and the Variable that `prefect-aci register` writes and the demo deployment reads.
ACI_CREDENTIALS_BLOCK = "prefect-aci"
FLOW_CODE_BLOCK = "prefect-aci-flow-code"
KEY_VAULT_VARIABLE = "key_vault_url"
# Key Vault secrets the template creates and the demo flow reads.
DEMO_SECRET = "prefect-aci-demo-secret"  # noqa: S105 (a secret's name, not its value)
# Environment variable names that hold secrets: never a plain value in a container group (ACI
# shows plain values to anyone with containerGroups/read). arm/checkov_checks/container_groups.py
# runs in checkov's own venv and repeats it; a test checks they agree.
SECRET_ENV_NAME = r"(KEY|SECRET|TOKEN|PASSWORD|PASSWD|AUTH_STRING|CONNECTION_STRING)$"  # noqa: S105 (a pattern of names)
# The demo flow and where its code goes.
FLOW_NAME = "key-vault-demo"
# The demo deployment `prefect-aci deploy-all` makes, on Azure and on the local Azure alike.
DEMO_DEPLOYMENT = "aci"
FLOW_FOLDER = "key_vault_demo"
FLOW_ENTRYPOINT = f"{FLOW_FOLDER}/flow.py:key_vault_demo"
FLOW_CODE_CONTAINER = "flow-code"
# The sweep as a scheduled deployment on the pool (PREFECT_ACI_SWEEP_EVERY): its code goes to
# SWEEP_FOLDER/ of the flow-code container, which the SWEEP_CODE_BLOCK storage block pulls alone.
SWEEP_FLOW_NAME = "prefect-aci-sweep"
SWEEP_DEPLOYMENT = "scheduled"
SWEEP_CODE_BLOCK = "prefect-aci-sweep-code"
SWEEP_FOLDER = "prefect-aci-sweep"
SWEEP_ENTRYPOINT = "arm/sweep_flow.py:sweep"
# Warm starts (PREFECT_ACI_STANDBY_POOL_SIZE above 0): a second work pool, `<pool>-standby`, whose
# worker (its own container group, `<prefix>-standby-worker`) claims each run's group from the
# template's standby pool; the demo flow is deployed on it as DEMO_STANDBY_DEPLOYMENT.
STANDBY_WORK_POOL_TYPE = "azure-container-instance-standby"
STANDBY_POOL_SUFFIX = "-standby"
DEMO_STANDBY_DEPLOYMENT = "aci-standby"
