"""`make bench`: our image against the usual one-stage recipe, built in the same run from the same
base. Sizes, cold and incremental build times, start times and push bytes; ratios ours/baseline.

Nothing here is a test: figures vary with the machine. Targets are reported, never asserted.
"""

import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import docker
from rich.console import Console
from rich.table import Table

from image_builder.build import stream_build
from image_builder.child import ChildRequest, build_child
from image_builder.context import CONTEXT_FILES, build_context
from image_builder.local_registry import LocalRegistry
from image_builder.push import PushPlan, push_tag
from image_builder.settings import RUNTIME_DIR

BASELINE_FILES = {"Dockerfile": 0o644, "requirements.in": 0o644, "entrypoint.sh": 0o755}
# Where each baseline file comes from: bench/ (the recipe and its pip entrypoint) or docker/.
BASELINE_SOURCES = {"Dockerfile": "bench", "entrypoint.sh": "bench", "requirements.in": "docker"}
START_PROBES = {
    "start_to_prefect_version_s": ["prefect", "version"],
    "start_to_worker_import_s": [
        "python3",
        "-c",
        "import prefect_azure.workers.container_instance",
    ],
}
# The requirement a flow run installs at start (EXTRA_PIP_PACKAGES: uv in ours, pip in the
# baseline) or has baked into a child image; the probe imports it.
EXTRA_REQUIREMENT = "tomli-w==1.2.0"
EXTRA_PROBE = ["python3", "-c", "import tomli_w"]
CA_IN_CONTAINER = "/etc/prefect-aci/ca.pem"
# Targets the bench reports against (never asserts): ratio ours/baseline (ours/ours for rebuild).
TARGETS = {
    "compressed_bytes": 0.3,
    "cold_build_s": 0.6,
    "start_to_prefect_version_s": 1.0,
    "start_to_worker_import_s": 1.0,
}
REBUILD_TARGET = 0.1  # rebuild after an entrypoint-only change, as a share of our cold build

# Bytes on disk per top-level entry of site-packages, bytecode included (uv does not list the
# .pyc it compiles in RECORD files, so distribution metadata would undercount our image).
PACKAGE_SIZES = """
import json, os, sysconfig
root = sysconfig.get_paths()["purelib"]
sizes = {}
for entry in os.scandir(root):
    total = 0
    for folder, _, files in os.walk(entry.path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    if not entry.is_dir():
        total = entry.stat().st_size
    sizes[entry.name] = total
print(json.dumps(sorted(sizes.items(), key=lambda kv: -kv[1])[:15]))
"""


@dataclass
class Figures:
    image_id: str = ""
    cold_build_s: float = 0.0
    rebuild_s: float = 0.0
    uncompressed_bytes: int = 0
    compressed_bytes: int = 0
    start_to_prefect_version_s: float = 0.0
    start_to_worker_import_s: float = 0.0
    first_push_bytes: int = 0
    repush_bytes: int = 0
    repush_layers: int = 0
    pull_s: float = 0.0
    start_with_extra_pip_s: float = 0.0
    layers: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class ChildFigures:
    """The same requirement baked into a child of our image instead of installed at start."""

    image_id: str = ""
    build_s: float = 0.0
    added_compressed_bytes: int = 0
    start_s: float = 0.0


@dataclass
class Subject:
    name: str
    context_dir: Path
    files: dict[str, int]
    buildargs: dict[str, str]
    figures: Figures = field(default_factory=Figures)
    target: str | None = None
    runtime_dir: Path | None = None


def _timed(action: Callable[[], str]) -> tuple[str, float]:
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


def _build(client, subject: Subject, ca: Path | None, nocache: bool, console: Console) -> str:
    def action() -> str:
        context = build_context(subject.context_dir, ca, subject.files, subject.runtime_dir)
        return stream_build(
            client, context, subject.buildargs, nocache, console, target=subject.target
        )

    image_id, seconds = _timed(action)
    if nocache:
        subject.figures.cold_build_s = seconds
    else:
        subject.figures.rebuild_s = seconds
    return image_id


def _touch_entrypoint(context_dir: Path) -> None:
    entrypoint = context_dir / "entrypoint.sh"
    entrypoint.write_text(entrypoint.read_text() + f"# bench change {time.time_ns()}\n")


def _start_times(client: docker.DockerClient, subjects: list[Subject], runs: int) -> None:
    """Median of ``runs`` container runs per probe, interleaving the images for fairness."""
    for key, command in START_PROBES.items():
        samples: dict[str, list[float]] = {s.name: [] for s in subjects}
        for _ in range(runs):
            for subject in subjects:
                _, seconds = _timed(
                    lambda s=subject, c=command: client.containers.run(
                        s.figures.image_id, c, remove=True, network_disabled=True
                    )
                )
                samples[subject.name].append(seconds)
        for subject in subjects:
            setattr(subject.figures, key, statistics.median(samples[subject.name]))


def _extra_pip_starts(
    client: docker.DockerClient,
    subjects: list[Subject],
    child: ChildFigures,
    ca: Path | None,
    runs: int,
) -> None:
    """Start to the requirement imported: installed at start (EXTRA_PIP_PACKAGES) in ours and the
    baseline, baked in the child; interleaved, median of ``runs``."""
    volumes = {str(ca): {"bind": CA_IN_CONTAINER, "mode": "ro"}} if ca else {}
    environment = {"EXTRA_PIP_PACKAGES": EXTRA_REQUIREMENT}
    if ca:
        environment["PIP_CERT"] = CA_IN_CONTAINER
    samples: dict[str, list[float]] = {s.name: [] for s in subjects}
    samples["child"] = []
    for _ in range(runs):
        for subject in subjects:
            _, seconds = _timed(
                lambda s=subject: client.containers.run(
                    s.figures.image_id,
                    EXTRA_PROBE,
                    environment=environment,
                    volumes=volumes,
                    remove=True,
                )
            )
            samples[subject.name].append(seconds)
        _, seconds = _timed(
            lambda: client.containers.run(
                child.image_id, EXTRA_PROBE, remove=True, network_disabled=True
            )
        )
        samples["child"].append(seconds)
    for subject in subjects:
        subject.figures.start_with_extra_pip_s = statistics.median(samples[subject.name])
    child.start_s = statistics.median(samples["child"])


def _pull_seconds(registry: LocalRegistry, repository: str, tag: str, into: Path) -> float:
    """Download every layer from the registry and unpack it, one after another, as an engine
    that holds none of them must (no second engine is started: on a shared machine that would
    touch the first one's network); the registry is on loopback, so this is mostly unpacking."""
    started = time.perf_counter()
    for number, layer in enumerate(registry.manifest(repository, tag)["layers"]):
        target = into / str(number)
        target.mkdir(parents=True)
        unpack = subprocess.Popen(
            ["tar", "-xz", "--no-same-owner", "-C", str(target)], stdin=subprocess.PIPE
        )
        with registry.blob(repository, layer["digest"]) as blob, unpack.stdin as sink:
            shutil.copyfileobj(blob, sink, 1 << 20)
        if unpack.wait() != 0:
            raise RuntimeError(f"tar could not unpack layer {layer['digest']}")
    seconds = time.perf_counter() - started
    shutil.rmtree(into, ignore_errors=True)
    return seconds


def _push(
    client, registry: LocalRegistry, repository: str, image_id: str, tag: str, console: Console
) -> tuple[int, list[str]]:
    """Push one image; return (bytes the registry stored anew, new layer digests)."""
    before = registry.stored_blobs()
    client.images.get(image_id).tag(f"{registry.host}/{repository}", tag)
    plan = PushPlan(registry=registry.host, repository=repository, tags=[tag], login=None)
    push_tag(client, plan, tag, console, lambda chunk: None)
    after = registry.stored_blobs()
    added = {digest: size for digest, size in after.items() if digest not in before}
    layers = [
        layer["digest"].split(":", 1)[1] for layer in registry.manifest(repository, tag)["layers"]
    ]
    new_layers = [digest for digest in layers if digest in added]
    return sum(added.values()), new_layers


def _package_sizes(client: docker.DockerClient, image_id: str) -> list[tuple[str, int]]:
    output = client.containers.run(
        image_id, ["python3", "-c", PACKAGE_SIZES], remove=True, network_disabled=True
    )
    return [tuple(pair) for pair in json.loads(output)]


def run_bench(
    client: docker.DockerClient,
    base_image: str,
    docker_dir: Path,
    bench_dir: Path,
    ca: Path | None,
    runs: int,
    console: Console,
) -> dict:
    with tempfile.TemporaryDirectory(prefix="prefect-aci-bench-") as tmp:
        work = Path(tmp)
        ours_dir, base_dir = work / "ours", work / "baseline"
        shutil.copytree(docker_dir, ours_dir)
        base_dir.mkdir()
        for name, source in BASELINE_SOURCES.items():
            shutil.copy((bench_dir if source == "bench" else docker_dir) / name, base_dir / name)
        args = {"BASE_IMAGE": base_image}
        ours = Subject(
            "ours",
            ours_dir,
            CONTEXT_FILES,
            args,
            target="runtime",
            runtime_dir=RUNTIME_DIR,
        )
        baseline = Subject("baseline", base_dir, BASELINE_FILES, args)
        subjects = [ours, baseline]

        for subject in subjects:
            console.rule(f"cold build: {subject.name}")
            subject.figures.image_id = _build(client, subject, ca, True, console)
        rebuilt = {}
        for subject in subjects:
            console.rule(f"rebuild after an entrypoint.sh change: {subject.name}")
            _touch_entrypoint(subject.context_dir)
            rebuilt[subject.name] = _build(client, subject, ca, False, console)

        console.rule(f"start times ({runs} runs each)")
        _start_times(client, subjects, runs)

        console.rule(f"child image with {EXTRA_REQUIREMENT} baked in")
        requirements = work / "requirements.txt"
        requirements.write_text(EXTRA_REQUIREMENT + "\n")
        child = ChildFigures()
        started = time.perf_counter()
        child_record = build_child(
            client,
            ChildRequest(
                parent=ours.figures.image_id,
                parent_reference="bench/ours",
                requirements=requirements,
                name="prefect-aci-bench/child",
                lock=work / "child" / "requirements.lock",
                ca_bundle=ca,
                nocache=True,
            ),
            dict(os.environ),
            console,
        )
        child.build_s = time.perf_counter() - started
        child.image_id = child_record.image_id

        console.rule(f"start with {EXTRA_REQUIREMENT} installed at start vs baked in ({runs} runs)")
        _extra_pip_starts(client, subjects, child, ca, runs)

        console.rule("push to a local registry")
        for subject in subjects:
            # A registry each: blobs are shared across repositories, and the base layer must
            # count in both first pushes.
            with LocalRegistry(work / f"registry-{subject.name}") as registry:
                figures = subject.figures
                repository = f"bench/{subject.name}"
                figures.first_push_bytes, _ = _push(
                    client, registry, repository, figures.image_id, "cold", console
                )
                figures.repush_bytes, new_layers = _push(
                    client, registry, repository, rebuilt[subject.name], "rebuilt", console
                )
                figures.repush_layers = len(new_layers)
                manifest = registry.manifest(repository, "cold")
                figures.compressed_bytes = sum(layer["size"] for layer in manifest["layers"])
                if subject is ours:
                    child.added_compressed_bytes, _ = _push(
                        client, registry, repository, child.image_id, "child", console
                    )
                console.rule(f"pull and unpack every layer: {subject.name}")
                figures.pull_s = _pull_seconds(registry, repository, "cold", work / "pulled")
            figures.uncompressed_bytes = client.images.get(figures.image_id).attrs["Size"]
            figures.layers = [
                (step.get("CreatedBy", "")[:70], step.get("Size", 0))
                for step in client.api.history(figures.image_id)
                if step.get("Size")
            ]
        packages = {s.name: _package_sizes(client, s.figures.image_id) for s in subjects}
    for tag in child_record.local_tags:
        client.images.remove(tag, noprune=True)
    return report(ours.figures, baseline.figures, packages, base_image, child)


def report(
    ours: Figures,
    baseline: Figures,
    packages: dict,
    base_image: str,
    child: ChildFigures | None = None,
) -> dict:
    keys = [
        "compressed_bytes",
        "uncompressed_bytes",
        "cold_build_s",
        "rebuild_s",
        "start_to_prefect_version_s",
        "start_to_worker_import_s",
        "first_push_bytes",
        "repush_bytes",
        "repush_layers",
        "pull_s",
        "start_with_extra_pip_s",
    ]
    rows = {}
    for key in keys:
        mine, theirs = getattr(ours, key), getattr(baseline, key)
        rows[key] = {
            "ours": mine,
            "baseline": theirs,
            "ratio": round(mine / theirs, 3) if theirs else None,
        }
    targets = {
        key: {
            "target": f"<= {limit}",
            "ratio": rows[key]["ratio"],
            "met": rows[key]["ratio"] is not None and rows[key]["ratio"] <= limit,
        }
        for key, limit in TARGETS.items()
    }
    rebuild_share = round(ours.rebuild_s / ours.cold_build_s, 3)
    targets["rebuild_s_vs_our_cold"] = {
        "target": f"<= {REBUILD_TARGET}",
        "ratio": rebuild_share,
        "met": rebuild_share <= REBUILD_TARGET,
    }
    targets["repush_layers"] = {
        "target": "1 small layer",
        "ratio": ours.repush_layers,
        "met": ours.repush_layers == 1 and ours.repush_bytes < 100_000,
    }
    child = child or ChildFigures()
    child_rows = {
        "child_build_s": child.build_s,
        "child_added_compressed_bytes": child.added_compressed_bytes,
        "child_start_s": child.start_s,
        "child_start_vs_extra_pip": round(child.start_s / ours.start_with_extra_pip_s, 3)
        if ours.start_with_extra_pip_s
        else None,
    }
    return {
        "base_image": base_image,
        "figures": rows,
        "child": child_rows,
        "targets": targets,
        "largest_packages": packages,
        "layers": {"ours": ours.layers, "baseline": baseline.layers},
        "images": {"ours": ours.image_id, "baseline": baseline.image_id},
        "raw": {"ours": asdict(ours), "baseline": asdict(baseline), "child": asdict(child)},
    }


def _human(key: str, value: float | None) -> str:
    if value is None:
        return "-"
    if key.endswith("_bytes"):
        return f"{value / 1e6:,.1f} MB"
    if key.endswith("_s"):
        return f"{value:.2f} s"
    return str(value)


def print_report(result: dict, console: Console) -> None:
    table = Table(title=f"prefect-aci vs the usual recipe (base {result['base_image']})")
    for column in ("figure", "ours", "baseline", "ours/baseline"):
        table.add_column(column, justify="left" if column == "figure" else "right")
    for key, row in result["figures"].items():
        table.add_row(
            key,
            _human(key, row["ours"]),
            _human(key, row["baseline"]),
            "-" if row["ratio"] is None else f"{row['ratio']:.3f}",
        )
    console.print(table)
    child = Table(title=f"{EXTRA_REQUIREMENT} baked into a child of ours")
    child.add_column("figure")
    child.add_column("value", justify="right")
    for key, value in result.get("child", {}).items():
        child.add_row(key, _human(key, value))
    console.print(child)
    targets = Table(title="targets")
    for column in ("figure", "target", "measured", "met"):
        targets.add_column(column)
    for key, target in result["targets"].items():
        targets.add_row(
            key,
            target["target"],
            str(target["ratio"]),
            "[green]yes[/]" if target["met"] else "[red]no[/]",
        )
    console.print(targets)
    for name, sizes in result["largest_packages"].items():
        packages = Table(title=f"largest entries in site-packages: {name}")
        packages.add_column("entry")
        packages.add_column("on disk", justify="right")
        for package, size in sizes[:12]:
            packages.add_row(package, f"{size / 1e6:.1f} MB")
        console.print(packages)
    for name, layers in result["layers"].items():
        history = Table(title=f"layers: {name}")
        history.add_column("created by")
        history.add_column("size", justify="right")
        for created_by, size in layers:
            history.add_row(created_by, f"{size / 1e6:.1f} MB")
        console.print(history)


def save(result: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
