"""`prefect-aci deploy-all --no-build`, with one change: Azure Resource Manager's address.

azure-mgmt-resource sends https://management.azure.com/... through azure-core's own requests
transport, redirected to the local ARM stand-in (tests/redirect.py); everything else is the
command as users run it: settings from the environment, DefaultAzureCredential, the Docker engine,
the registry, Blob storage and the Prefect API over their real protocols.

Usage: python -m tests.deploy_all_driver ARM_ADDRESS IMAGE_RECORD AZURE_RECORD
"""

import sys
from pathlib import Path

from arm.deploy import TEMPLATE, load_template
from arm.settings import InfraSettings
from prefect_aci.cli.common import command_group, run_cli
from prefect_aci.core.settings import load
from prefect_aci.deploy_all import NO_AZURE, execute
from prefect_aci.local_aci.app import MANAGEMENT
from tests.redirect import RedirectTransport

app = command_group("deploy-all against a local ARM stand-in")


@app.command()
def run(arm_address: str, image_record: Path, azure_record: Path) -> None:
    settings = load(InfraSettings, when_unconfigured=NO_AZURE)
    execute(
        settings,
        load_template(TEMPLATE),
        image_record,
        azure_record,
        RedirectTransport(MANAGEMENT, arm_address),
    )


if __name__ == "__main__":
    sys.argv.insert(1, "run")
    run_cli(app)
