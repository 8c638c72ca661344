"""`prefect-aci azure validate|deploy|destroy|sweep` and `azure acr list|prune`: the template
offline; deploy or delete it with azure-mgmt-resource and azure-identity (no az CLI); clean up
after flow runs; keep an Azure Container Registry tidy."""

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from arm.checkov import run_checkov
from arm.deploy import TEMPLATE, Infra, load_template, parameters, worker_image
from arm.settings import AzureTarget, InfraSettings, SweepSettings
from arm.sweep import parse_duration, summary
from arm.sweep import sweep as sweep_group
from arm.validation import SCHEMAS_DIR, load_schemas, validate_template
from image_builder import api as image_api
from prefect_aci.cli.common import command_group
from prefect_aci.core.azure import default_credential
from prefect_aci.core.console import console
from prefect_aci.core.errors import UserError
from prefect_aci.core.paths import AZURE_RECORD, IMAGE_RECORD
from prefect_aci.core.records import AzureRecord, read_record, write_record
from prefect_aci.core.settings import load

app = command_group(
    "The Azure side: validate arm/azuredeploy.json offline, deploy it to a resource group, "
    "sweep what flow runs left behind, delete it. Signs in with DefaultAzureCredential (az "
    "login, AZURE_TENANT_ID/AZURE_CLIENT_ID/AZURE_CLIENT_SECRET, or a managed identity); reads "
    "AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, AZURE_LOCATION and the template's settings "
    "from the environment or .env."
)


@app.command()
def validate(
    template: Annotated[Path, typer.Option(help="Template to check.")] = TEMPLATE,
    schemas: Annotated[
        Path, typer.Option(help="Folder of Azure's ARM JSON schemas (vendored in arm/schemas).")
    ] = SCHEMAS_DIR,
    checkov: Annotated[
        bool, typer.Option(help="Also run checkov with the project's checks (CKV_PACI_*).")
    ] = True,
) -> None:
    """Check the template offline: every resource against Azure's schema for its type and
    apiVersion, then checkov (its ARM checks and ours; each skip carries a written reason)."""
    document = load_template(template)
    problems = validate_template(document, load_schemas(schemas))
    for problem in problems:
        console.print(escape(problem), highlight=False)
    if problems:
        raise UserError(f"{len(problems)} schema problem(s) in {template}")
    console.print(
        f"{template.name}: {len(document['resources'])} resources valid against "
        f"Azure's schemas in {schemas}"
    )
    if not checkov:
        return
    report = run_checkov(template)
    for finding in report.skipped:
        console.print(
            f"  skipped {finding.check_id} on {finding.resource}: {escape(finding.text)}",
            highlight=False,
        )
    for finding in report.failed:
        console.print(
            f"  [red]failed[/] {finding.check_id} on {finding.resource}: {escape(finding.text)}",
            highlight=False,
        )
    if report.failed:
        raise UserError(f"checkov: {len(report.failed)} check(s) failed on {template}")
    console.print(
        f"checkov: {len(report.passed)} passed, {len(report.skipped)} skipped with reasons, "
        "0 failed"
    )


@app.command()
def deploy(
    what_if: Annotated[bool, typer.Option(help="Show what would change; deploy nothing.")] = False,
    image_record: Annotated[
        Path, typer.Option(help="Image record whose pinned reference the worker runs.")
    ] = IMAGE_RECORD,
    outputs: Annotated[Path, typer.Option(help="Where to write the deployment's outputs.")] = (
        AZURE_RECORD
    ),
    template: Annotated[Path, typer.Option(help="Template to deploy.")] = TEMPLATE,
    replace_worker: Annotated[
        bool,
        typer.Option(
            help="Delete the worker's container group first when PREFECT_ACI_WORKER_CPU or "
            "PREFECT_ACI_WORKER_MEMORY_GB changed (ACI cannot change them in place; without "
            "this the deploy stops and says so)."
        ),
    ] = False,
) -> None:
    """Deploy the template to AZURE_RESOURCE_GROUP; write its outputs to build/azure.json.

    Settings: AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, AZURE_LOCATION (to create the group),
    PREFECT_API_URL (https, or loopback, unless PREFECT_ACI_ALLOW_HTTP_API_URL=true),
    PREFECT_API_KEY (Prefect Cloud) or PREFECT_API_AUTH_STRING (a self-hosted server's
    user:password); optional
    PREFECT_ACI_PREFIX, PREFECT_ACI_KEY_VAULT_NAME,
    PREFECT_ACI_WORK_POOL_NAME, PREFECT_ACI_DEMO_SECRET_VALUE, PREFECT_ACI_DEPLOY_REGISTRY,
    PREFECT_ACI_REGISTRY_SKU, PREFECT_ACI_DEPLOY_WORKER, PREFECT_ACI_ENABLE_PURGE_PROTECTION,
    PREFECT_ACI_WORKER_CPU, PREFECT_ACI_WORKER_MEMORY_GB, PREFECT_ACI_KEY_VAULT_RETENTION_DAYS
    (fixed when the vault is created: a change is refused).
    """
    settings = load(InfraSettings)
    image = read_record(image_record) if image_record.is_file() else None
    document = load_template(template)
    worker_image(settings, image)  # refused before anything is sent
    infra = Infra.connect(settings, default_credential())
    params = parameters(settings, image, infra.deployer)
    infra.ensure_resource_group()
    if what_if:
        for change, resource in infra.what_if(document, params):
            print(f"{change:<10} {resource}")
        stale = infra.worker_to_replace(params)
        if stale:
            console.print(f"[yellow]warning:[/] {escape(stale)}: deploy with --replace-worker")
        vault = infra.vault_retention(params)
        if vault:
            console.print(
                f"[yellow]warning:[/] Key Vault {vault[0]} keeps deleted secrets {vault[1]} days "
                "and Azure cannot change that: the deploy will be refused; set "
                f"PREFECT_ACI_KEY_VAULT_RETENTION_DAYS={vault[1]}"
            )
        return
    console.print(
        f"Deploying {template.name} to resource group {settings.azure_resource_group} "
        "(several minutes)"
    )
    write_record(outputs, infra.deploy(document, params, replace_worker=replace_worker))
    console.print(f"[bold green]Deployed[/]; outputs in {outputs}")


@app.command()
def destroy(
    yes: Annotated[bool, typer.Option("--yes", help="Really delete the resource group.")] = False,
    outputs: Annotated[Path, typer.Option(help="Deployment outputs to read the vault from.")] = (
        AZURE_RECORD
    ),
) -> None:
    """Delete AZURE_RESOURCE_GROUP and everything in it (asks for --yes).

    Settings: AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP (nothing about Prefect).
    """
    target = load(AzureTarget)
    if not yes:
        raise UserError(
            f"this deletes resource group {target.azure_resource_group} and all "
            "in it; run again with --yes (make destroy CONFIRM=yes)"
        )
    vault = _vault_name(outputs)
    infra = Infra.connect(target, default_credential())
    roles = infra.destroy()
    outputs.unlink(missing_ok=True)
    console.print(
        f"Deleted resource group {target.azure_resource_group}. Key Vault {vault} is now "
        "soft-deleted, not gone: its name stays taken until the retention period ends "
        "(PREFECT_ACI_KEY_VAULT_RETENTION_DAYS when it was created, 90 by default). To deploy "
        "again under the same name, recover it (`az keyvault recover "
        f"--name {vault}`) or purge it (`az keyvault purge --name {vault}`); with purge "
        "protection on it cannot be purged, so set PREFECT_ACI_KEY_VAULT_NAME to a new name "
        "instead."
    )
    if not roles:
        console.print("No custom worker role of this resource group was found to delete.")
        return
    # A role definition lives in the subscription, not in the group: it outlives the group.
    for role in roles:
        infra.delete_role(role)
        console.print(f"Deleted the worker's custom role {role.name!r}.")


@app.command()
def sweep(
    dry_run: Annotated[
        bool, typer.Option(help="List what would be done; change and delete nothing.")
    ] = False,
    older_than: Annotated[
        str,
        typer.Option(
            help="Delete flow-run deployments at least this old (30m, 12h, 7d, 1d12h). Each "
            "keeps the template the worker submitted, the API key or auth string in it."
        ),
    ] = "1d",
) -> None:
    """Reconcile and clean up after flow runs in AZURE_RESOURCE_GROUP. A Pending or Running run
    of the pool whose container group ended (exit code known, group stopped) or is gone, and
    whose engine never reported its end, is marked Crashed with why (exit 137: out of memory or
    evicted), once PREFECT_ACI_SWEEP_GRACE_SECONDS have passed; the container's last log lines
    are written to the run's logs first. Then deletes container groups whose flow run is
    finished, crashed, cancelled or unknown to the Prefect API (the worker deletes them itself,
    unless it died or timed out), and flow-run ARM deployments (prefect-<flow>-<run id>) older
    than --older-than. Never the worker's own group (<PREFECT_ACI_PREFIX>-worker) nor anything
    else. Needs no more than the worker role (docs/azure.md).

    Settings: AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP, PREFECT_API_URL (the workspace the
    worker serves; https, or loopback, unless PREFECT_ACI_ALLOW_HTTP_API_URL=true), PREFECT_API_KEY
    (Prefect Cloud) or PREFECT_API_AUTH_STRING (a self-hosted server); optional PREFECT_ACI_PREFIX,
    PREFECT_ACI_WORK_POOL_NAME, PREFECT_ACI_SWEEP_GRACE_SECONDS (60),
    PREFECT_ACI_SWEEP_LOG_LINES (50).
    """
    age = parse_duration(older_than)
    settings = load(SweepSettings)
    console.print(
        f"Sweeping resource group {settings.azure_resource_group}"
        + (" (dry run: nothing is changed or deleted)" if dry_run else ""),
        highlight=False,
    )
    verdicts = sweep_group(settings, default_credential(), age, dry_run, print)
    print(summary(verdicts, dry_run))


def _vault_name(outputs: Path) -> str:
    recorded = read_record(outputs, AzureRecord).key_vault_name if outputs.is_file() else ""
    return recorded or "its Key Vault"


acr_app = command_group(
    "Housekeeping in an Azure Container Registry: list and prune tags. Signs in with "
    "DefaultAzureCredential (az login, AZURE_TENANT_ID/AZURE_CLIENT_ID/AZURE_CLIENT_SECRET, or a "
    "managed identity)."
)
app.add_typer(acr_app, name="acr")

RegistryOption = Annotated[
    str, typer.Option(help="Registry login server, like myregistry.azurecr.io.")
]
RepositoryOption = Annotated[
    str | None,
    typer.Option(help="Repository (default: the one build/image.json was pushed to)."),
]


@acr_app.command("list")
def acr_list(
    registry: RegistryOption,
    repository: RepositoryOption = None,
    record: Annotated[Path, typer.Option(help="Image record.")] = IMAGE_RECORD,
) -> None:
    """Tags with their digests and last update, newest first."""
    _, tags = image_api.acr_tags(registry, repository, record)
    table = Table("tag", "digest", "updated")
    for tag in tags:
        table.add_row(tag.name, tag.digest, tag.updated.isoformat(timespec="seconds"))
    Console().print(table)


@acr_app.command("prune")
def acr_prune(
    registry: RegistryOption,
    keep: Annotated[int, typer.Option(help="How many of the newest tags to keep.")],
    repository: RepositoryOption = None,
    dry_run: Annotated[bool, typer.Option(help="Only say what would be deleted.")] = False,
    record: Annotated[
        Path, typer.Option(help="Image record whose digest and tags are never deleted.")
    ] = IMAGE_RECORD,
) -> None:
    """Delete all but the newest --keep tags; never one that build/image.json pins."""
    name, doomed = image_api.acr_prune(registry, repository, keep, dry_run, record)
    for tag in doomed:
        print(f"{'would delete' if dry_run else 'deleted'} {name}:{tag.name} ({tag.digest})")
    console.print(f"{len(doomed)} tag(s) {'to delete' if dry_run else 'deleted'} from {name}")
