"""`prefect-aci image ...` and `prefect-aci acr ...`: build, tag, push and measure the image;
make an offline base; keep an Azure Container Registry tidy."""

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from image_builder import base as base_images
from image_builder.acr import default_credential
from image_builder.acr_tags import acr_client, delete_tags, list_tags, prune_plan
from image_builder.bench import print_report, run_bench, save
from image_builder.build import TRIMS, BuildRequest, build_image, check_keep
from image_builder.child import ChildRequest, build_child, check_name
from image_builder.push import publish
from image_builder.registry import (
    RegistryKind,
    registry_kind,
    validate_registry,
    validate_repository,
)
from image_builder.settings import BENCH_DIR, ImageSettings, detect_ca_bundle
from image_builder.tagging import image_tags
from prefect_aci.core.console import command_group, console
from prefect_aci.core.engine import connect, ensure_programs
from prefect_aci.core.errors import UserError
from prefect_aci.core.paths import BUILD_DIR, IMAGE_RECORD, PROJECT_ROOT
from prefect_aci.core.records import read_record, write_record

app = command_group(
    "Build, tag, push and measure the prefect-aci image (tini, prefect, prefect-azure, adlfs, "
    "azure-keyvault-secrets). Reads BASE_IMAGE, IMAGE_REPOSITORY, CA_BUNDLE (else PIP_CERT, "
    "REQUESTS_CA_BUNDLE, SSL_CERT_FILE), OFFLINE_BASE_IMAGE and DEBIAN_MIRROR from the "
    "environment or .env; writes build/image.json."
)


def _parse_build_args(values: list[str]) -> dict[str, str]:
    parsed = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise UserError(f"--build-arg takes NAME=VALUE; got {value!r}")
        parsed[key] = val
    return parsed


@app.command()
def build(
    base: Annotated[
        str | None,
        typer.Option(
            help="Base image (default: python:<--python>-slim-bookworm, else BASE_IMAGE or "
            "python:3.12-slim-bookworm)."
        ),
    ] = None,
    python: Annotated[
        str | None,
        typer.Option(
            help="Python version: 3.11, 3.12 or 3.13. Picks python:X.Y-slim-bookworm; offline, "
            "Debian's Python (3.11 bookworm, 3.13 trixie; none has 3.12)."
        ),
    ] = None,
    keep: Annotated[
        list[str],
        typer.Option(help=f"Leave out a trim ({', '.join(TRIMS)}); repeatable."),
    ] = [],  # noqa: B006
    no_trim: Annotated[bool, typer.Option(help="Leave out every trim: the full packages.")] = False,
    server: Annotated[
        bool,
        typer.Option(
            help="Build the server variant (`prefect server start` with its UI): the image plus "
            "one layer; tags end in -server."
        ),
    ] = False,
    requirements: Annotated[
        Path | None,
        typer.Option(
            help="Build a child image FROM the built one (or --parent) with these requirements "
            "resolved into a hashed lock and installed; needs --name."
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Repository name of the child image (with --requirements).")
    ] = None,
    parent: Annotated[
        str | None,
        typer.Option(help="Parent of the child image (default: the image in build/image.json)."),
    ] = None,
    repository: Annotated[str | None, typer.Option(help="Local repository name.")] = None,
    ca_bundle: Annotated[
        Path | None,
        typer.Option(
            help="PEM bundle trusted in the build "
            "stage only (default: PIP_CERT, "
            "REQUESTS_CA_BUNDLE or SSL_CERT_FILE)."
        ),
    ] = None,
    no_ca_bundle: Annotated[bool, typer.Option(help="Trust only the base image's CAs.")] = False,
    build_arg: Annotated[
        list[str], typer.Option(help="Extra NAME=VALUE build argument; repeatable.")
    ] = [],  # noqa: B006
    offline_fallback: Annotated[
        bool,
        typer.Option(help="When the base cannot be pulled, make and use the offline Debian base."),
    ] = False,
    no_cache: Annotated[bool, typer.Option(help="Build every layer anew.")] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show every build line.")
    ] = False,
    record: Annotated[
        Path | None,
        typer.Option(
            help="Where to write the image record (default: build/image.json; "
            "build/images/<name>.json for a child)."
        ),
    ] = None,
) -> None:
    """Build the image, tag it from what it contains, and write build/image.json.

    With --requirements FILE --name NAME: a child image of the built one instead, with FILE's
    requirements baked in (build/images/NAME.json; push it with `push --record`).

    Settings: BASE_IMAGE, IMAGE_PYTHON, IMAGE_REPOSITORY, CA_BUNDLE (else PIP_CERT,
    REQUESTS_CA_BUNDLE, SSL_CERT_FILE; used in the build stage only), OFFLINE_BASE_IMAGE,
    DEBIAN_MIRROR.
    """
    settings = ImageSettings()
    extra_args = _parse_build_args(build_arg)
    kept = ("all",) if no_trim else check_keep(keep)
    if requirements is not None or name is not None:
        if requirements is None or name is None:
            raise UserError("a child image needs both --requirements FILE and --name NAME")
        _build_child(
            requirements,
            check_name(name),
            parent,
            ca_bundle,
            no_ca_bundle,
            record,
            no_cache,
            verbose,
            settings,
        )
        return
    python = python or settings.image_python
    if python is not None:
        base_images.check_python(python)
    client = connect()
    base_image = base_images.resolve_base(
        client,
        base or (base_images.online_base(python) if python else settings.base_image),
        settings.offline_base_image,
        offline_fallback,
        settings.debian_mirror,
        console,
        python=python,
    )
    request = BuildRequest(
        docker_dir=settings.docker_dir,
        base_image=base_image,
        repository=repository or settings.image_repository,
        ca_bundle=None if no_ca_bundle else detect_ca_bundle(ca_bundle or settings.ca_bundle),
        source_url=settings.source_url,
        project_root=PROJECT_ROOT,
        build_args=extra_args,
        nocache=no_cache,
        verbose=verbose,
        keep=kept,
        server=server,
        python=python,
    )
    image = build_image(client, request, console)
    record = record or IMAGE_RECORD
    write_record(record, image)
    console.print(f"Wrote {record}")


def _build_child(
    requirements: Path,
    name: str,
    parent: str | None,
    ca_bundle: Path | None,
    no_ca_bundle: bool,
    record: Path | None,
    no_cache: bool,
    verbose: bool,
    settings: ImageSettings,
) -> None:
    if not requirements.is_file():
        raise UserError(f"requirements file {requirements} does not exist")
    if parent is None:
        parent_record = read_record(IMAGE_RECORD)
        parent, reference = (
            parent_record.image_id,
            parent_record.reference or (parent_record.local_tags[0]),
        )
    else:
        reference = parent
    request = ChildRequest(
        parent=parent,
        parent_reference=reference,
        requirements=requirements,
        name=name,
        lock=BUILD_DIR / "images" / name / "requirements.lock",
        ca_bundle=None if no_ca_bundle else detect_ca_bundle(ca_bundle or settings.ca_bundle),
        nocache=no_cache,
        verbose=verbose,
    )
    image = build_child(connect(), request, dict(os.environ), console)
    record = record or BUILD_DIR / "images" / f"{name.replace('/', '-')}.json"
    write_record(record, image)
    console.print(f"Wrote {record}; push it with `prefect-aci image push --record {record}`")


@app.command("base")
def base_command(
    offline: Annotated[
        bool,
        typer.Option(
            help="Make the base from Debian packages with debootstrap (no image registry needed)."
        ),
    ] = False,
    tag: Annotated[str | None, typer.Option(help="Tag of the offline base.")] = None,
    mirror: Annotated[str | None, typer.Option(help="Debian mirror.")] = None,
    rebuild: Annotated[bool, typer.Option(help="Make it again even if present.")] = False,
    python: Annotated[
        str,
        typer.Option(help="3.11 (Debian bookworm) or 3.13 (Debian trixie); no Debian has 3.12."),
    ] = "3.11",
) -> None:
    """Make a Debian base image from Debian packages with debootstrap (root; reused when
    present): bookworm with Python 3.11, or trixie with 3.13. Settings: OFFLINE_BASE_IMAGE,
    DEBIAN_MIRROR."""
    if not offline:
        raise UserError("only --offline is supported: an online base is pulled by build itself")
    settings = ImageSettings()
    found = base_images.offline_base(base_images.check_python(python), settings.offline_base_image)
    if found is None:
        raise UserError(
            f"no Debian release ships Python {python} (bookworm has 3.11, trixie 3.13): "
            "no offline base can be made for it"
        )
    made = base_images.make_offline_base(
        connect(),
        tag or found[0],
        mirror or settings.debian_mirror,
        console,
        rebuild=rebuild,
        suite=found[1],
    )
    print(made)


@app.command()
def tags(
    image: Annotated[
        str | None, typer.Option(help="Image to read (default: the one in build/image.json).")
    ] = None,
    latest: Annotated[bool, typer.Option(help="Include latest.")] = False,
    record: Annotated[Path, typer.Option(help="Image record to read.")] = IMAGE_RECORD,
) -> None:
    """Print the tags the image earns, one a line, read from the image itself."""
    ref = image or read_record(record).image_id
    for tag in image_tags(connect(), ref, latest=latest):
        print(tag)


@app.command()
def push(
    registry: Annotated[
        str | None,
        typer.Option(help="myregistry.azurecr.io, docker.io or any OCI registry host[:port]."),
    ] = None,
    repository: Annotated[
        str | None,
        typer.Option(
            help="Repository in the registry (default: the local one; <user>/<it> on Docker Hub)."
        ),
    ] = None,
    latest: Annotated[bool, typer.Option(help="Also push the latest tag.")] = False,
    attempts: Annotated[
        int,
        typer.Option(
            min=1, max=10, help="Tries per tag when the registry fails in a transient way."
        ),
    ] = 4,
    record: Annotated[Path, typer.Option(help="Image record to read and update.")] = IMAGE_RECORD,
) -> None:
    """Push every tag the image earns, verify the digest, record the pinned reference in
    build/image.json.

    Credentials by registry: <name>.azurecr.io takes an Azure credential (DefaultAzureCredential,
    exchanged for an ACR token) or ACR_USERNAME/ACR_PASSWORD; docker.io takes
    DOCKERHUB_USERNAME/DOCKERHUB_TOKEN; any other registry REGISTRY_USERNAME/REGISTRY_PASSWORD or
    none.
    """
    if not registry:
        raise UserError(
            "name the registry: --registry myregistry.azurecr.io (or REGISTRY=... with make push)"
        )
    updated = publish(
        record, registry, repository, latest=latest, attempts=attempts, console=console
    )
    console.print(f"[bold green]Pushed[/] {updated.reference}; wrote {record}")
    print(updated.reference)


@app.command()
def bench(
    base: Annotated[
        str | None,
        typer.Option(
            help="Base image for both images (default: "
            "BASE_IMAGE; the offline base if it cannot be "
            "pulled)."
        ),
    ] = None,
    runs: Annotated[
        int, typer.Option(min=1, max=50, help="Container runs per start-time figure (median).")
    ] = 5,
    output: Annotated[Path, typer.Option(help="Where to write the figures.")] = BUILD_DIR
    / "bench.json",
) -> None:
    """Measure our image against the usual one-stage recipe, built now from the same base:
    sizes, build times, start times, push bytes (build/bench.json). Settings: BASE_IMAGE,
    CA_BUNDLE."""
    settings = ImageSettings()
    client = connect()
    ensure_programs("docker-registry")  # compressed sizes and push bytes come from a registry
    base_image = base_images.resolve_base(
        client,
        base or settings.base_image,
        settings.offline_base_image,
        True,
        settings.debian_mirror,
        console,
    )
    result = run_bench(
        client,
        base_image,
        settings.docker_dir,
        BENCH_DIR,
        detect_ca_bundle(settings.ca_bundle),
        runs,
        console,
    )
    print_report(result, Console())
    save(result, output)
    console.print(f"Wrote {output}")


acr_app = command_group(
    "Housekeeping in an Azure Container Registry: list and prune tags. Signs in with "
    "DefaultAzureCredential (az login, AZURE_TENANT_ID/AZURE_CLIENT_ID/AZURE_CLIENT_SECRET, or a "
    "managed identity)."
)

RegistryOption = Annotated[
    str, typer.Option(help="Registry login server, like myregistry.azurecr.io.")
]
RepositoryOption = Annotated[
    str | None, typer.Option(help="Repository (default: the one in build/image.json).")
]


def _acr_target(registry: str, repository: str | None, record: Path) -> tuple[str, str]:
    target = validate_registry(registry)
    if registry_kind(target) is not RegistryKind.ACR:
        raise UserError(f"{target} is not an Azure Container Registry (<name>.azurecr.io)")
    if repository is None:
        if not record.is_file():
            raise UserError(
                "pass --repository, or build and push first so build/image.json names it"
            )
        repository = read_record(record).repository
    return target, validate_repository(repository, RegistryKind.ACR)


@acr_app.command("list")
def acr_list(
    registry: RegistryOption,
    repository: RepositoryOption = None,
    record: Annotated[Path, typer.Option(help="Image record.")] = IMAGE_RECORD,
) -> None:
    """Tags with their digests and last update, newest first."""
    target, name = _acr_target(registry, repository, record)
    client = acr_client(target, default_credential())
    table = Table("tag", "digest", "updated")
    for tag in list_tags(client, name):
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
    target, name = _acr_target(registry, repository, record)
    pinned = read_record(record) if record.is_file() else None
    client = acr_client(target, default_credential())
    doomed = prune_plan(
        list_tags(client, name),
        keep,
        pinned.digest if pinned else None,
        set(pinned.tags) if pinned else set(),
    )
    for tag in doomed:
        print(f"{'would delete' if dry_run else 'deleting'} {name}:{tag.name} ({tag.digest})")
    if not dry_run:
        delete_tags(client, name, doomed)
    console.print(f"{len(doomed)} tag(s) {'to delete' if dry_run else 'deleted'} from {name}")
