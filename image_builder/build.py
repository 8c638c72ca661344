"""Build the image through the docker SDK's streaming API, showing progress as it goes."""

import re
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import docker
import docker.models.images
from docker.errors import APIError
from rich.console import Console
from rich.markup import escape

from image_builder import vcs
from image_builder.context import build_context
from image_builder.probe import (
    ImageVersions,
    base_python_version,
    has_ui,
    image_versions,
    locked_version,
)
from image_builder.settings import RUNTIME_DIR
from image_builder.tagging import REVISION_LABEL, suffix, version_tags
from prefect_aci.core.errors import UserError
from prefect_aci.core.records import ImageRecord

_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_TAIL_LINES = 25
# The trims docker/trim.py knows, in the order the Dockerfile runs them.
TRIMS = ("azure-api-versions", "ui", "pip", "bytecode", "symbols", "uv")
# What a failing check step prints (docker/check.py, uv): the cause, worth the error line.
_CHECK_FAILURE = re.compile(r"^(prefect-aci image check: .*|error: .*)$")


@dataclass
class BuildRequest:
    docker_dir: Path
    base_image: str
    repository: str
    ca_bundle: Path | None
    source_url: str
    project_root: Path
    build_args: dict[str, str] = field(default_factory=dict)
    nocache: bool = False
    verbose: bool = False
    keep: tuple[str, ...] = ()  # trims left out (TRIMS), or ("all",)
    server: bool = False  # the `server` stage: runtime plus the UI and all bytecode
    python: str | None = None  # X.Y asked for: the base must have it

    @property
    def target(self) -> str:
        return "server" if self.server else "runtime"


def check_keep(names: list[str]) -> tuple[str, ...]:
    unknown = [name for name in names if name not in (*TRIMS, "all")]
    if unknown:
        raise UserError(
            f"--keep takes a trim name; got {', '.join(unknown)} (trims: {', '.join(TRIMS)})"
        )
    return tuple(names)


@dataclass
class BuildResult:
    image_id: str
    step: str = ""
    output: deque[str] = field(default_factory=lambda: deque(maxlen=_TAIL_LINES))


def follow_build(stream: Iterable[dict], console: Console, verbose: bool) -> BuildResult:
    """Consume the engine's build stream; raise a UserError naming the step that failed.

    Errors come inside the stream (``error`` / ``errorDetail``), not as exceptions.
    """
    result = BuildResult(image_id="")
    started = time.monotonic()
    for chunk in stream:
        if "error" in chunk or "errorDetail" in chunk:
            message = chunk.get("error") or chunk.get("errorDetail", {}).get("message", "")
            for line in result.output:
                console.print(f"  {line}", style="dim", highlight=False, markup=False)
            where = f"step {result.step}" if result.step else "before the first step"
            cause = next(
                (line for line in reversed(result.output) if _CHECK_FAILURE.match(line)), ""
            )
            raise UserError(
                f"build failed at {where}: {cause + ' (' if cause else ''}{message.strip()}"
                f"{')' if cause else ''}"
            )
        if "aux" in chunk and "ID" in chunk["aux"]:
            result.image_id = chunk["aux"]["ID"]
        for line in _lines(chunk.get("stream", "")):
            step = _STEP.match(line)
            if step:
                instruction = _one_line(step.group(3))
                result.step = f"{step.group(1)}/{step.group(2)} ({instruction})"
                result.output.clear()
                elapsed = time.monotonic() - started
                console.print(
                    f"[bold cyan]{step.group(1)}/{step.group(2)}[/] "
                    f"{escape(instruction)} [dim]+{elapsed:.0f}s[/]",
                    highlight=False,
                    overflow="ellipsis",
                    no_wrap=True,
                )
            else:
                result.output.append(line)
                if verbose or line.startswith((" ---> Using cache", "trim ")):
                    console.print(f"  {line}", style="dim", highlight=False, markup=False)
    if not result.image_id:
        raise UserError("the engine finished the build without reporting an image id")
    return result


def _one_line(instruction: str, width: int = 100) -> str:
    text = " ".join(instruction.split())
    return text if len(text) <= width else text[: width - 1] + "…"


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _lines(text: str) -> Iterator[str]:
    # The classic builder colours a step's stderr; the words are what the error line needs.
    for line in _ANSI.sub("", text).splitlines():
        line = line.rstrip()
        if line:
            yield line


def stream_build(
    client: docker.DockerClient,
    context: BinaryIO,
    buildargs: dict[str, str],
    nocache: bool,
    console: Console,
    verbose: bool = False,
    target: str | None = None,
) -> str:
    """Send a prepared tar context to the engine and follow the build; return the image id."""
    try:
        stream = client.api.build(
            fileobj=context,
            custom_context=True,
            target=target,
            buildargs=buildargs,
            nocache=nocache,
            pull=False,
            rm=True,
            forcerm=True,
            decode=True,
        )
        return follow_build(stream, console, verbose).image_id
    except APIError as exc:
        raise UserError(f"the engine refused the build: {exc.explanation or exc}") from None


def tag_and_record(
    image: docker.models.images.Image,
    repository: str,
    tags: list[str],
    base_image: str,
    versions: ImageVersions,
    started: float,
    console: Console,
) -> ImageRecord:
    """Tag the built image ``repository:<tag>`` for each tag; the record of the local build."""
    refs = [f"{repository}:{tag}" for tag in tags]
    for ref in refs:
        image.tag(repository, ref.rsplit(":", 1)[1])
    console.print(
        f"[bold green]Built[/] {image.id[:19]} in {time.monotonic() - started:.0f}s, "
        f"tagged {', '.join(refs)}"
    )
    return ImageRecord(
        image_id=image.id,
        repository=repository,
        local_tags=refs,
        base_image=base_image,
        versions=versions.as_dict(),
        labels=dict(image.labels or {}),
    )


def build_image(
    client: docker.DockerClient, request: BuildRequest, console: Console
) -> ImageRecord:
    """Build, tag from what the image reports, and return the record for build/image.json."""
    lock = request.docker_dir / "requirements.lock"
    expected = ImageVersions(
        python=base_python_version(client, request.base_image),
        prefect=locked_version(lock, "prefect"),
        prefect_azure=locked_version(lock, "prefect-azure"),
    )
    if request.python and expected.python_minor != request.python:
        raise UserError(
            f"base {request.base_image} has Python {expected.python}, not {request.python}; "
            f"drop --base to use python:{request.python}-slim-bookworm"
        )
    primary = version_tags(expected.prefect, expected.python_minor, request.target)[0]
    args = {
        "BASE_IMAGE": request.base_image,
        "IMAGE_VERSION": primary,
        "VCS_REF": vcs.revision(request.project_root),
        "CREATED": vcs.created(request.project_root),
        "SOURCE_URL": request.source_url,
        "PREFECT_VERSION": expected.prefect,
        "PREFECT_AZURE_VERSION": expected.prefect_azure,
        "PYTHON_VERSION": expected.python,
        "KEEP": " ".join(request.keep),
        **request.build_args,
    }
    context = build_context(request.docker_dir, request.ca_bundle, runtime_dir=RUNTIME_DIR)
    kept = f", keeping {' '.join(request.keep)}" if request.keep else ""
    console.print(
        f"[bold]Building[/] {request.repository} ({request.target}) from {request.base_image} "
        f"(prefect {expected.prefect}, python {expected.python}"
        f"{', CA bundle ' + str(request.ca_bundle) if request.ca_bundle else ''}{kept})"
    )
    started = time.monotonic()
    image_id = stream_build(
        client, context, args, request.nocache, console, request.verbose, request.target
    )
    actual = image_versions(client, image_id)
    if actual != expected:
        raise UserError(
            f"the built image reports {actual.as_dict()} but its labels say {expected.as_dict()}; "
            "the lock or base changed during the build: rebuild"
        )
    if request.server and not has_ui(client, image_id):
        raise UserError("the server image holds no Prefect UI; rebuild with --no-cache")
    tags = [
        *version_tags(actual.prefect, actual.python_minor, request.target),
        f"latest{suffix(request.target)}",
    ]
    image = client.images.get(image_id)
    record = tag_and_record(
        image, request.repository, tags, request.base_image, actual, started, console
    )
    if record.labels.get(REVISION_LABEL, "").endswith("-dirty"):
        console.print(
            "[yellow]The working tree has uncommitted changes: no sha- tag will be pushed.[/]"
        )
    return record
