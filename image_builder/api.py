"""The image stage's plain functions: what `prefect-aci image ...`, `azure acr ...`, deploy-all
and the demo call. Each takes typed inputs, reads its settings through the one loader, and
returns what it made; printing progress goes to the given console."""

import os
from dataclasses import dataclass, field
from pathlib import Path

from docker.errors import APIError
from rich.console import Console

from image_builder import base as base_images
from image_builder.acr_tags import TagInfo, acr_client, delete_tags, list_tags, prune_plan
from image_builder.base_pins import DOCKERFILES, read_pins, refresh_pins, repin_dockerfile
from image_builder.bench import run_bench, save
from image_builder.build import BuildRequest, build_image, check_keep
from image_builder.child import ChildRequest, build_child, check_name
from image_builder.registry import RegistryKind, registry_kind, validate_registry
from image_builder.registry import validate_repository as valid_repository
from image_builder.settings import BENCH_DIR, ImageSettings, detect_ca_bundle
from image_builder.tagging import image_tags
from prefect_aci.core.azure import default_credential
from prefect_aci.core.engine import connect, ensure_programs
from prefect_aci.core.errors import UserError, first_line
from prefect_aci.core.paths import BUILD_DIR, IMAGE_RECORD, PROJECT_ROOT
from prefect_aci.core.records import ImageRecord, read_record, write_record
from prefect_aci.core.settings import load


@dataclass(frozen=True)
class BuildOptions:
    """What a build may change from the settings (PREFECT_ACI_BASE_IMAGE, ...)."""

    base: str | None = None
    python: str | None = None
    keep: tuple[str, ...] = ()  # trims left out; ("all",) for none
    server: bool = False
    repository: str | None = None
    ca_bundle: Path | None = None
    no_ca_bundle: bool = False
    build_args: dict[str, str] = field(default_factory=dict)
    offline_fallback: bool = False
    no_cache: bool = False
    verbose: bool = False


def parse_build_args(values: list[str]) -> dict[str, str]:
    parsed = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise UserError(f"--build-arg takes NAME=VALUE; got {value!r}")
        parsed[key] = val
    return parsed


def _ca_bundle(options_bundle: Path | None, no_ca_bundle: bool, settings: ImageSettings):
    return None if no_ca_bundle else detect_ca_bundle(options_bundle or settings.ca_bundle)


def build(options: BuildOptions, record: Path, console: Console) -> ImageRecord:
    """Build the image, tag it from what it contains, write ``record``; the record."""
    settings = load(ImageSettings)
    keep = options.keep if options.keep == ("all",) else check_keep(list(options.keep))
    python = options.python or settings.image_python
    if python is not None:
        base_images.check_python(python)
    client = connect()
    base_image = base_images.resolve_base(
        client,
        options.base or (base_images.online_base(python) if python else settings.base_image),
        settings.offline_base_image,
        options.offline_fallback,
        settings.debian_mirror,
        console,
        python=python,
    )
    request = BuildRequest(
        docker_dir=settings.docker_dir,
        base_image=base_image,
        repository=options.repository or settings.image_repository,
        ca_bundle=_ca_bundle(options.ca_bundle, options.no_ca_bundle, settings),
        source_url=settings.source_url,
        project_root=PROJECT_ROOT,
        build_args=options.build_args,
        nocache=options.no_cache,
        verbose=options.verbose,
        keep=keep,
        server=options.server,
        python=python,
    )
    image = build_image(client, request, console)
    write_record(record, image)
    console.print(f"Wrote {record}")
    return image


def child_record_path(name: str) -> Path:
    return BUILD_DIR / "images" / f"{name.replace('/', '-')}.json"


def build_child_image(
    requirements: Path,
    name: str,
    options: BuildOptions,
    console: Console,
    parent: str | None = None,
    record: Path | None = None,
) -> Path:
    """A child image of the built one (or ``parent``) with ``requirements`` baked in; the path
    of its record."""
    settings = load(ImageSettings)
    name = check_name(name)
    if not requirements.is_file():
        raise UserError(f"requirements file {requirements} does not exist")
    if parent is None:
        parent_record = read_record(IMAGE_RECORD)
        parent = parent_record.image_id
        reference = (
            parent_record.published.reference
            if parent_record.published
            else parent_record.local_tags[0]
        )
    else:
        reference = parent
    request = ChildRequest(
        parent=parent,
        parent_reference=reference,
        requirements=requirements,
        name=name,
        lock=BUILD_DIR / "images" / name / "requirements.lock",
        ca_bundle=_ca_bundle(options.ca_bundle, options.no_ca_bundle, settings),
        nocache=options.no_cache,
        verbose=options.verbose,
    )
    image = build_child(connect(), request, dict(os.environ), console)
    record = record or child_record_path(name)
    write_record(record, image)
    console.print(f"Wrote {record}; push it with `prefect-aci image push --record {record}`")
    return record


def make_offline_base(
    python: str, tag: str | None, mirror: str | None, rebuild: bool, console: Console
) -> str:
    """The Debian base made from Debian packages with debootstrap; its tag."""
    settings = load(ImageSettings)
    found = base_images.offline_base(base_images.check_python(python), settings.offline_base_image)
    if found is None:
        raise UserError(
            f"no Debian release ships Python {python} (bookworm has 3.11, trixie 3.13): "
            "no offline base can be made for it"
        )
    return base_images.make_offline_base(
        connect(),
        tag or found[0],
        mirror or settings.debian_mirror,
        console,
        rebuild=rebuild,
        suite=found[1],
    )


def refresh_base_pins() -> dict[str, str]:
    """Re-pin docker/base-images.lock to what each tag points to in its registry now."""
    client = connect()

    def digest_of(reference: str) -> str:
        try:
            return client.api.inspect_distribution(reference)["Descriptor"]["digest"]
        except APIError as exc:
            reason = first_line(str(exc.explanation or exc))
            raise UserError(f"cannot ask the registry for {reference}: {reason}") from None

    moved = refresh_pins(digest_of)
    for dockerfile in DOCKERFILES:
        repin_dockerfile(dockerfile, read_pins())
    return moved


def earned_tags(image: str | None, latest: bool, record: Path) -> list[str]:
    """The tags the image earns, read from the image itself."""
    return image_tags(connect(), image or read_record(record).image_id, latest=latest)


def bench(base: str | None, runs: int, output: Path, console: Console) -> dict:
    """Our image against the usual one-stage recipe, built now from the same base."""
    settings = load(ImageSettings)
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
    save(result, output)
    return result


def acr_target(registry: str, repository: str | None, record: Path) -> tuple[str, str]:
    """(login server, repository) of an ACR housekeeping command: the repository named, else
    the one the image was pushed to (build/image.json)."""
    target = validate_registry(registry)
    if registry_kind(target) is not RegistryKind.ACR:
        raise UserError(f"{target} is not an Azure Container Registry (<name>.azurecr.io)")
    if repository is None:
        pushed = read_record(record).published if record.is_file() else None
        if pushed is None:
            raise UserError(
                "pass --repository, or push first so build/image.json names the repository"
            )
        repository = pushed.repository
    return target, valid_repository(repository, RegistryKind.ACR)


def acr_tags(registry: str, repository: str | None, record: Path) -> tuple[str, list[TagInfo]]:
    """The repository's tags, newest first."""
    target, name = acr_target(registry, repository, record)
    return name, list_tags(acr_client(target, default_credential()), name)


def acr_prune(
    registry: str, repository: str | None, keep: int, dry_run: bool, record: Path
) -> tuple[str, list[TagInfo]]:
    """Delete all but the newest ``keep`` tags, never one that ``record`` pins; what was (or,
    with ``dry_run``, would be) deleted."""
    target, name = acr_target(registry, repository, record)
    pinned = read_record(record).published if record.is_file() else None
    client = acr_client(target, default_credential())
    doomed = prune_plan(
        list_tags(client, name),
        keep,
        pinned.digest if pinned else None,
        set(pinned.tags) if pinned else set(),
    )
    if not dry_run:
        delete_tags(client, name, doomed)
    return name, doomed
