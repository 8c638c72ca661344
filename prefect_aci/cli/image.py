"""`prefect-aci image ...`: build, tag, push and measure the image; make an offline base."""

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from image_builder import api
from image_builder.bench import print_report
from image_builder.build import TRIMS
from image_builder.push import publish
from prefect_aci.cli.common import command_group
from prefect_aci.core.console import console
from prefect_aci.core.errors import UserError
from prefect_aci.core.paths import BUILD_DIR, IMAGE_RECORD

app = command_group(
    "Build, tag, push and measure the prefect-aci image (tini, prefect, prefect-azure, adlfs, "
    "azure-keyvault-secrets). Reads PREFECT_ACI_BASE_IMAGE, PREFECT_ACI_IMAGE_REPOSITORY, "
    "PREFECT_ACI_CA_BUNDLE (else PIP_CERT, REQUESTS_CA_BUNDLE, SSL_CERT_FILE), "
    "PREFECT_ACI_OFFLINE_BASE_IMAGE and PREFECT_ACI_DEBIAN_MIRROR from the environment or .env; "
    "writes build/image.json."
)


@app.command()
def build(
    base: Annotated[
        str | None,
        typer.Option(
            help="Base image (default: python:<--python>-slim-bookworm, else "
            "PREFECT_ACI_BASE_IMAGE or python:3.12-slim-bookworm)."
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
            help="PEM bundle trusted in the build stage only (default: PREFECT_ACI_CA_BUNDLE, "
            "else PIP_CERT, REQUESTS_CA_BUNDLE or SSL_CERT_FILE)."
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

    Settings: PREFECT_ACI_BASE_IMAGE, PREFECT_ACI_IMAGE_PYTHON, PREFECT_ACI_IMAGE_REPOSITORY,
    PREFECT_ACI_CA_BUNDLE (else PIP_CERT, REQUESTS_CA_BUNDLE, SSL_CERT_FILE; used in the build
    stage only), PREFECT_ACI_OFFLINE_BASE_IMAGE, PREFECT_ACI_DEBIAN_MIRROR.
    """
    options = api.BuildOptions(
        base=base,
        python=python,
        keep=("all",) if no_trim else tuple(keep),
        server=server,
        repository=repository,
        ca_bundle=ca_bundle,
        no_ca_bundle=no_ca_bundle,
        build_args=api.parse_build_args(build_arg),
        offline_fallback=offline_fallback,
        no_cache=no_cache,
        verbose=verbose,
    )
    if requirements is not None or name is not None:
        if requirements is None or name is None:
            raise UserError("a child image needs both --requirements FILE and --name NAME")
        api.build_child_image(requirements, name, options, console, parent=parent, record=record)
        return
    api.build(options, record or IMAGE_RECORD, console)


@app.command("pin-base")
def pin_base() -> None:
    """Refresh the production bases' digests in docker/base-images.lock: ask the registry
    (through the Docker engine, with its credentials and mirrors) what each pinned tag points
    to now, and rewrite the file. Review the diff, then rebuild and test."""
    moved = api.refresh_base_pins()
    for reference in moved.values():
        console.print(f"pinned {reference}", highlight=False)
    if not moved:
        console.print("every base is pinned to what its tag points to now")


@app.command("base")
def base_command(
    offline: Annotated[
        bool,
        typer.Option(
            help="Make the base from Debian packages with debootstrap (no image registry needed)."
        ),
    ] = False,
    tag: Annotated[str | None, typer.Option(help="Tag of the offline base.")] = None,
    mirror: Annotated[
        str | None,
        typer.Option(
            help="Debian mirror (default: https://deb.debian.org/debian where it answers, else "
            "http; Release signatures are checked against Debian's keyring either way)."
        ),
    ] = None,
    rebuild: Annotated[bool, typer.Option(help="Make it again even if present.")] = False,
    python: Annotated[
        str,
        typer.Option(help="3.11 (Debian bookworm) or 3.13 (Debian trixie); no Debian has 3.12."),
    ] = "3.11",
) -> None:
    """Make a Debian base image from Debian packages with debootstrap (root; reused when
    present): bookworm with Python 3.11, or trixie with 3.13. Settings:
    PREFECT_ACI_OFFLINE_BASE_IMAGE, PREFECT_ACI_DEBIAN_MIRROR."""
    if not offline:
        raise UserError("only --offline is supported: an online base is pulled by build itself")
    print(api.make_offline_base(python, tag, mirror, rebuild, console))


@app.command()
def tags(
    image: Annotated[
        str | None, typer.Option(help="Image to read (default: the one in build/image.json).")
    ] = None,
    latest: Annotated[bool, typer.Option(help="Include latest.")] = False,
    record: Annotated[Path, typer.Option(help="Image record to read.")] = IMAGE_RECORD,
) -> None:
    """Print the tags the image earns, one a line, read from the image itself."""
    for tag in api.earned_tags(image, latest, record):
        print(tag)


@app.command()
def push(
    registry: Annotated[
        str | None,
        typer.Option(help="myregistry.azurecr.io, docker.io or any OCI registry host[:port]."),
    ] = None,
    repository: Annotated[
        str | None,
        typer.Option(help="Repository in the registry (default: the local repository name)."),
    ] = None,
    namespace: Annotated[
        str | None,
        typer.Option(
            help="Namespace in the registry, before the repository (default: "
            "PREFECT_ACI_REGISTRY_NAMESPACE; on Docker Hub, PREFECT_ACI_DOCKERHUB_USERNAME)."
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
    """Push every tag the image earns to <registry>/[<namespace>/]<repository>, verify the
    digest, record where it went (the pinned reference) in build/image.json.

    Credentials by registry: <name>.azurecr.io takes an Azure credential (DefaultAzureCredential,
    exchanged for an ACR token) or PREFECT_ACI_ACR_USERNAME/PREFECT_ACI_ACR_PASSWORD; docker.io
    takes PREFECT_ACI_DOCKERHUB_USERNAME/PREFECT_ACI_DOCKERHUB_TOKEN; any other registry
    PREFECT_ACI_REGISTRY_USERNAME/PREFECT_ACI_REGISTRY_PASSWORD or none.
    """
    if not registry:
        raise UserError(
            "name the registry: --registry myregistry.azurecr.io (or REGISTRY=... with make push)"
        )
    updated = publish(
        record,
        registry,
        repository,
        namespace=namespace,
        latest=latest,
        attempts=attempts,
        console=console,
    )
    console.print(f"[bold green]Pushed[/] {updated.reference}; wrote {record}")
    print(updated.reference)


@app.command()
def bench(
    base: Annotated[
        str | None,
        typer.Option(
            help="Base image for both images (default: PREFECT_ACI_BASE_IMAGE; the offline base "
            "if it cannot be pulled)."
        ),
    ] = None,
    runs: Annotated[
        int, typer.Option(min=1, max=50, help="Container runs per start-time figure (median).")
    ] = 5,
    output: Annotated[Path, typer.Option(help="Where to write the figures.")] = BUILD_DIR
    / "bench.json",
) -> None:
    """Measure our image against the usual one-stage recipe, built now from the same base:
    sizes, build times, start times, push bytes (build/bench.json). Settings:
    PREFECT_ACI_BASE_IMAGE, PREFECT_ACI_CA_BUNDLE."""
    result = api.bench(base, runs, output, console)
    print_report(result, Console())
    console.print(f"Wrote {output}")
