"""The last step of the build stage, after the trims: what a worker start and a flow run use must
still import and work, or the build fails with one line naming what broke. Offline: no server, no
Azure (the tests run the real worker and flow run against the built image)."""

import importlib
import sys
import uuid

# What the ACI worker, a flow run with the blob pull step, Key Vault and `prefect server start`
# (API only when the UI is trimmed) import.
MODULES = (
    "prefect.cli",
    "prefect.flow_engine",
    "prefect.deployments.steps",
    "prefect.server.api.server",
    "prefect_azure.workers.container_instance",
    "prefect_azure.blob_storage",
    "adlfs",
    "azure.identity",
    "azure.keyvault.secrets",
    "prefect_aci_runtime.warm",
    "prefect_aci_runtime.worker",
)


def fail(message: str) -> None:
    print(f"prefect-aci image check: {message}", file=sys.stderr)
    raise SystemExit(1)


def main() -> None:
    for name in MODULES:
        try:
            importlib.import_module(name)
        except Exception as exc:
            fail(f"import {name} failed after the trims ({type(exc).__name__}: {exc})")
    try:
        from azure.identity import DefaultAzureCredential
        from azure.mgmt.resource.resources.models import Deployment, DeploymentProperties
        from prefect_azure.workers.container_instance import AzureContainerWorker

        template = AzureContainerWorker.get_default_base_job_template()
        assert template["job_configuration"]["arm_template"]["resources"]
        subscription = str(uuid.uuid4())
        credential = DefaultAzureCredential()
        # The operation groups the worker calls load their API version's modules lazily.
        from azure.mgmt.containerinstance import ContainerInstanceManagementClient
        from azure.mgmt.resource import ResourceManagementClient

        resources = ResourceManagementClient(credential, subscription)
        deployment = Deployment(properties=DeploymentProperties(mode="Incremental", template={}))
        resources.deployments._serialize.body(deployment, "Deployment")
        ContainerInstanceManagementClient(credential, subscription).container_groups  # noqa: B018
    except Exception as exc:
        fail(f"the ACI worker's Azure clients failed after the trims ({type(exc).__name__}: {exc})")


if __name__ == "__main__":
    main()
