"""Container groups as Docker containers, the way ACI runs them: a group's `command` replaces the
image's entrypoint, its environment variables (plain and secure) are set, CPU and memory become
limits, the restart policy becomes Docker's, the subnet is the stack's network, and each
container can reach the instance metadata service (IMDS) at 169.254.169.254 for its group's
managed identities. The group's definition lives in the containers' labels (secure values left
out), so the stand-in can be restarted without losing its groups.

Config maps (Microsoft Learn, "Config maps"): each container's `configMap.keyValuePairs` are files
`/mnt/configmap/<container name>/<key>`, the value as content, bind-mounted read-only from
LocalAzure.wiring.config_maps_folder and rewritten in place (atomically, file by file): an update
that changes only config maps restarts nothing, as Azure documents. A standby pool's member can be
handed over (`adopt`) to the group a claim names: its containers keep running, under their labels
(`Group.docker_key`), while the group takes the claimed name, identity and config maps."""

import contextlib
import datetime
import json
import os
import re
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import docker
from docker.errors import APIError, ImageNotFound, NotFound

from prefect_aci.local_aci import container_rules
from prefect_aci.local_aci.config import LABEL, MANAGEMENT_HOST, LocalAzure
from prefect_aci.local_aci.directory import Directory
from prefect_aci.local_aci.resources import VAULTS, ResourceStore

RESTART_POLICIES = {
    "Never": None,
    "OnFailure": {"Name": "on-failure"},
    "Always": {"Name": "always"},
}
GIB = 1024**3
# Where a Linux container finds its config map (Microsoft Learn, "Config maps":
# /mnt/configmap/<containername>/<key>).
CONFIG_MAP_MOUNT = "/mnt/configmap"
# A config map key is a file name here; Azure documents no rule for keys (local's choice).
CONFIG_MAP_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,252}$")


class GroupError(Exception):
    """ACI refused or could not create the group: ``code``, message and HTTP status as ACI
    reports them."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass
class DeleteOperation:
    """A container group DELETE as ACI runs it: accepted at once (202), done later.

    The REST spec's ContainerGroups_Delete example (azure-rest-api-specs,
    specification/containerinstance, examples/2023-05-01/ContainerGroups_Delete.json) answers 202
    with `azure-asyncoperation: .../providers/Microsoft.ContainerInstance/locations/<location>/
    operations/<id>`; the operation's status follows ARM's async operation protocol
    (InProgress, then Succeeded)."""

    id: str
    group_key: str
    group_name: str
    seconds: float
    started: str = field(default_factory=lambda: _now())
    ended: str | None = None

    @property
    def status(self) -> str:
        return "Succeeded" if self.ended else "InProgress"

    def body(self, resource_id: str) -> dict:
        found = {"id": resource_id, "name": self.id, "status": self.status}
        found["startTime"] = self.started
        if self.ended:
            found["endTime"] = self.ended
        return found


@dataclass
class Group:
    resource_group: str
    name: str
    spec: dict  # the resource as deployed, secure values removed
    provisioning_state: str = "Creating"
    stopped: bool = False
    created: str = field(default_factory=lambda: _now())
    error: GroupError | None = None
    deleting: DeleteOperation | None = None
    # The key its containers are labelled with: the group's own, or the standby pool member's
    # it was claimed from (Docker labels cannot change).
    docker_key: str = ""

    def __post_init__(self) -> None:
        self.docker_key = self.docker_key or self.key

    @property
    def key(self) -> str:
        return f"{self.resource_group}/{self.name}".lower()


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


def _without_secrets(resource: dict) -> dict:
    spec = json.loads(json.dumps(resource))
    for container in spec.get("properties", {}).get("containers", []):
        for variable in container.get("properties", {}).get("environmentVariables", []) or []:
            if "secureValue" in variable:
                variable["secureValue"] = None
    return spec


class Groups:
    def __init__(
        self, client: docker.DockerClient, config: LocalAzure, store: ResourceStore | None = None
    ) -> None:
        self.client = client
        self.config = config
        # What is deployed: the identities a group may carry, the vaults its containers reach.
        self.directory = Directory(config, store if store is not None else ResourceStore())
        self.lock = threading.Lock()
        self.groups: dict[str, Group] = {}
        self.operations: dict[str, DeleteOperation] = {}
        self._recover()

    def _labels(self, group: Group, container: str) -> dict[str, str]:
        return {
            f"{LABEL}.stack": self.config.wiring.stack_id,
            f"{LABEL}.group": group.docker_key,
            f"{LABEL}.container": container,
            f"{LABEL}.spec": json.dumps(group.spec),
            f"{LABEL}.created": group.created,
        }

    def _recover(self) -> None:
        """Groups whose containers outlived an earlier run of the stand-in."""
        for container in self._containers():
            labels = container.labels
            spec = json.loads(labels[f"{LABEL}.spec"])
            docker_key = labels[f"{LABEL}.group"]
            resource_group = docker_key.partition("/")[0]
            claimed = self._claim_record(docker_key)
            if claimed is not None:
                # A standby pool member that a claim took: the claimed group, not a member.
                resource_group, spec = claimed["resource_group"], claimed["spec"]
            group = Group(
                resource_group,
                spec["name"],
                spec,
                "Succeeded",
                created=labels[f"{LABEL}.created"],
                docker_key=docker_key,
            )
            self.groups.setdefault(group.key, group)

    def _containers(self, group: Group | None = None) -> list:
        filters = {"label": [f"{LABEL}.stack={self.config.wiring.stack_id}", f"{LABEL}.group"]}
        if group is not None:
            filters["label"].append(f"{LABEL}.group={group.docker_key}")
        # A container removed between the list and its inspection (a group or pool member
        # being deleted meanwhile) is not an error.
        return self.client.containers.list(all=True, filters=filters, ignore_removed=True)

    def get(self, resource_group: str, name: str) -> Group | None:
        return self.groups.get(f"{resource_group}/{name}".lower())

    def all_in(self, resource_group: str) -> list[Group]:
        prefix = f"{resource_group}/".lower()
        return [g for key, g in sorted(self.groups.items()) if key.startswith(prefix)]

    def create(self, resource_group: str, resource: dict) -> Group:
        """Check the group as ACI does (container_rules: the group itself, the change from the
        group it replaces, the region's core quota), register it and start its containers (image
        pull first); returns at once, the group's provisioning state says when it is done.

        A PUT over an existing group is an update: refused for what ACI cannot change in place,
        else all its containers restart (recreated with the new definition), as Microsoft Learn's
        "Update containers in Azure Container Instances" says ACI does, even when nothing
        changed."""
        group = Group(resource_group, resource["name"], _without_secrets(resource))
        location = self.config.location
        with self.lock:
            existing = self.groups.get(group.key)
            if existing is not None and existing.deleting is not None:
                raise GroupError(
                    "Conflict", f"The container group '{group.name}' is being deleted.", 409
                )
            if existing is not None and existing.provisioning_state == "Creating":
                raise GroupError(
                    "Conflict", f"The container group '{group.name}' is being created.", 409
                )
            problems = container_rules.group_problems(group.name, resource, location)
            if existing is not None:
                problems += container_rules.update_problems(group.name, existing.spec, resource)
            problems += container_rules.quota_problems(
                resource,
                self.cores_in_use(exclude=group.key),
                self.config.standard_cores_quota,
                location,
            )
            if problems:
                raise GroupError(problems[0].code, problems[0].message, problems[0].status)
            self._check_config_maps(group.spec)
            if existing is not None and _only_config_maps_differ(existing.spec, group.spec):
                # Config maps change without a restart (Microsoft Learn, "Config maps").
                existing.spec = group.spec
                self.write_config_maps(existing)
                if existing.docker_key != existing.key:
                    self._record_claim(existing)
                return existing
            if existing is not None:
                self._remove_containers(existing)
            self.groups[group.key] = group
        threading.Thread(target=self._start, args=(group, resource), daemon=True).start()
        return group

    def adopt(self, member: Group, resource_group: str, name: str, spec: dict) -> Group:
        """Hand a running standby pool member over to the group ``name`` a claim asks for: its
        containers keep running; the group takes ``spec`` (the claim's identity, tags and config
        maps on the profile's definition), and the config map files are written."""
        self._check_config_maps(spec)
        with self.lock:
            if f"{resource_group}/{name}".lower() in self.groups:
                raise GroupError("Conflict", f"The container group '{name}' already exists.", 409)
            self.groups.pop(member.key, None)
            member.resource_group, member.name = resource_group, name
            member.spec = _without_secrets(spec)
            self.groups[member.key] = member
        self.write_config_maps(member)
        self._record_claim(member)
        return member

    def _claim_file(self, docker_key: str) -> Path | None:
        base = self.config.wiring.config_maps_folder
        return Path(base) / docker_key.replace("/", "~") / ".claimed.json" if base else None

    def _record_claim(self, group: Group) -> None:
        """What a claim made of a member, beside its config maps: its labels cannot say it, and
        a restarted stand-in must not hand the member out again."""
        path = self._claim_file(group.docker_key)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            record = {"resource_group": group.resource_group, "spec": group.spec}
            path.write_text(json.dumps(record))

    def _claim_record(self, docker_key: str) -> dict | None:
        path = self._claim_file(docker_key)
        if path is None or not path.is_file():
            return None
        return json.loads(path.read_text())

    def _check_config_maps(self, spec: dict) -> None:
        _check_config_maps(spec)
        given = any(_config_map(c) for c in spec.get("properties", {}).get("containers") or [])
        if given and not self.config.wiring.config_maps_folder:
            raise GroupError(
                "ConfigMapNotSupported",
                "This local Azure has no folder for config maps (Wiring.config_maps_folder).",
            )

    def _config_map_folder(self, group: Group, container: str) -> Path | None:
        base = self.config.wiring.config_maps_folder
        if not base:
            return None
        return Path(base) / group.docker_key.replace("/", "~") / container

    def write_config_maps(self, group: Group) -> None:
        """Each container's config map as files, in place: a new value replaces its file
        atomically (a reader sees the old or the new content), a key no longer given goes."""
        for container in group.spec.get("properties", {}).get("containers") or []:
            folder = self._config_map_folder(group, container["name"])
            if folder is None:
                continue
            pairs = _config_map(container)
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o755)
            for stale in folder.iterdir():
                if not stale.name.startswith(".") and stale.name not in pairs:
                    stale.unlink(missing_ok=True)
            for key, value in pairs.items():
                staged = folder / f".{key}.tmp"
                staged.write_text(str(value))
                staged.chmod(0o644)
                os.replace(staged, folder / key)

    def cores_in_use(self, exclude: str = "") -> Decimal:
        """CPU the region's quota counts: groups that hold their cores (provisioning or running,
        or being deleted), not stopped, failed or terminated ones."""
        states = self.container_states()
        used = Decimal(0)
        for key, group in self.groups.items():
            if key == exclude or group.stopped or group.provisioning_state == "Failed":
                continue
            found = states.get(group.docker_key, [])
            ended = found and all(
                not (s.get("Running") or s.get("Restarting")) and s.get("Status") != "created"
                for s in found
            )
            if group.deleting is None and group.provisioning_state == "Succeeded" and ended:
                continue
            used += container_rules.requested(group.spec)[0]
        return used

    def container_states(self) -> dict[str, list[dict]]:
        """Docker's state of every container of the stack's groups, by Group.docker_key (one
        call to the engine for all of them)."""
        states: dict[str, list[dict]] = {}
        for container in self._containers():
            key = container.labels.get(f"{LABEL}.group", "")
            states.setdefault(key, []).append(container.attrs.get("State", {}))
        return states

    def wait(self, group: Group, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while group.provisioning_state == "Creating" and time.monotonic() < deadline:
            time.sleep(0.2)

    def _start(self, group: Group, resource: dict) -> None:
        try:
            for container in resource["properties"]["containers"]:
                self._pull(container["properties"]["image"], group)
            identities = self._identities(resource)
            self.write_config_maps(group)
            for container in resource["properties"]["containers"]:
                self._run(group, container, resource["properties"], identities)
            if group.deleting is None:
                group.provisioning_state = "Succeeded"
        except GroupError as exc:
            group.error = exc
            group.provisioning_state = "Failed"
            self._remove_containers(group)
        except APIError as exc:
            group.error = GroupError("ContainerGroupDeploymentFailed", str(exc.explanation))
            group.provisioning_state = "Failed"
            self._remove_containers(group)

    def _identities(self, resource: dict) -> list[str]:
        assigned = (resource.get("identity") or {}).get("userAssignedIdentities") or {}
        for resource_id in assigned:
            if self.directory.identity_by_resource_id(resource_id) is None:
                raise GroupError(
                    "InvalidIdentity",
                    f"The user-assigned identity '{resource_id}' does not exist in the local "
                    "Azure.",
                )
        return list(assigned)

    def _pull(self, image: str, group: Group) -> None:
        try:
            self.client.images.get(image)
            return
        except ImageNotFound:
            pass
        except APIError:
            pass
        repository, _, digest = image.partition("@")
        if digest:
            tag = digest
        else:
            last = repository.rsplit("/", 1)[-1]
            repository, tag = repository.rsplit(":", 1) if ":" in last else (repository, "latest")
        try:
            self.client.api.pull(repository, tag=tag)
        except (APIError, NotFound) as exc:
            raise GroupError(
                "InaccessibleImage",
                f"The image '{image}' in container group '{group.name}' is not accessible. "
                f"Please check the image and registry credential. ({exc.explanation})",
            ) from None

    def _run(self, group: Group, container: dict, group_props: dict, identities: list[str]) -> None:
        properties = container["properties"]
        wiring = self.config.wiring
        env = {
            variable["name"]: variable.get("value", variable.get("secureValue")) or ""
            for variable in properties.get("environmentVariables") or []
        }
        # The local CA, so that Azure's host names (answered by the stand-ins) verify: the
        # CA bundle settings requests, aiohttp and Python's ssl read. Real ACI needs none of this.
        env.setdefault("REQUESTS_CA_BUNDLE", wiring.ca_bundle_container_path)
        env.setdefault("SSL_CERT_FILE", wiring.ca_bundle_container_path)
        command = properties.get("command") or []
        requests = properties.get("resources", {}).get("requests", {})
        limits = properties.get("resources", {}).get("limits", {}) or requests
        volumes = {
            wiring.ca_bundle_host_path: {"bind": wiring.ca_bundle_container_path, "mode": "ro"}
        }
        config_maps = self._config_map_folder(group, container["name"])
        if config_maps is not None:
            mount = f"{CONFIG_MAP_MOUNT}/{container['name']}"
            volumes[str(config_maps)] = {"bind": mount, "mode": "ro"}
        kwargs = {
            "name": f"aci-{wiring.stack_id[:8]}-{group.name}-{container['name']}"[:120],
            "labels": {
                **self._labels(group, container["name"]),
                **self._identity_labels(identities),
            },
            "environment": env,
            "detach": True,
            "network": wiring.network,
            "extra_hosts": self._hosts(),
            "volumes": volumes,
            "nano_cpus": int(float(limits.get("cpu", 1)) * 1e9),
            "mem_limit": int(float(limits.get("memoryInGB", 1.5)) * GIB),
            "restart_policy": RESTART_POLICIES.get(group_props.get("restartPolicy", "Always")),
            # Docker grants NET_RAW by default, and with it a container crafts packets from any
            # address on the shared IMDS network (169.254.169.254 among them) or the stack's;
            # ACI's containers have no such capability.
            "cap_drop": ["NET_RAW"],
        }
        if command:
            kwargs["entrypoint"] = command[:1]
            kwargs["command"] = command[1:]
        created = self.client.containers.create(properties["image"], **kwargs)
        self.client.networks.get(wiring.imds_network).connect(created)
        created.start()

    def _hosts(self) -> dict[str, str]:
        """Azure's host names -> the stand-in: the stack's own (Resource Manager), and each
        deployed vault's <name>.vault.azure.net, as Azure's DNS answers them."""
        hosts = dict(self.config.wiring.extra_hosts)
        stand_in = hosts.get(MANAGEMENT_HOST)
        if stand_in:
            for vault in self.directory.store.by_type(VAULTS):
                hosts.setdefault(f"{vault.body['name'].lower()}.vault.azure.net", stand_in)
        return hosts

    @staticmethod
    def _identity_labels(identities: list[str]) -> dict[str, str]:
        return {f"{LABEL}.identities": json.dumps(identities)}

    def identities_of_address(self, address: str) -> list[str]:
        """The user-assigned identities of the group whose container has ``address`` on the IMDS
        network: how IMDS knows who asks (a claimed pool member's are the claim's)."""
        network = self.config.wiring.imds_network
        for container in self._containers():
            networks = container.attrs.get("NetworkSettings", {}).get("Networks", {})
            if networks.get(network, {}).get("IPAddress") == address:
                labelled = container.labels.get(f"{LABEL}.group", "")
                with self.lock:
                    found = [g for g in self.groups.values() if g.docker_key == labelled]
                if found:
                    identity = found[0].spec.get("identity") or {}
                    return list(identity.get("userAssignedIdentities") or {})
                return json.loads(container.labels.get(f"{LABEL}.identities", "[]"))
        return []

    def instance_view(self, group: Group) -> list[tuple[str, dict]]:
        """(container name, ACI instance view) for each container of the group."""
        views = []
        by_name = {c.labels[f"{LABEL}.container"]: c for c in self._containers(group)}
        for container in group.spec["properties"]["containers"]:
            found = by_name.get(container["name"])
            views.append((container["name"], _view(found)))
        return views

    def logs(self, group: Group, container: str, tail: int | None) -> str | None:
        for found in self._containers(group):
            if found.labels[f"{LABEL}.container"] == container:
                return found.logs(tail=tail if tail else "all").decode(errors="replace")
        return None

    def stop(self, group: Group) -> None:
        for container in self._containers(group):
            container.stop(timeout=10)
        group.stopped = True

    def start(self, group: Group) -> None:
        for container in self._containers(group):
            container.start()
        group.stopped = False

    def delete(self, group: Group) -> None:
        with self.lock:
            self._remove_containers(group)
            self.groups.pop(group.key, None)
        base = self.config.wiring.config_maps_folder
        if base:
            shutil.rmtree(Path(base) / group.docker_key.replace("/", "~"), ignore_errors=True)

    def begin_delete(self, group: Group, seconds: float) -> DeleteOperation:
        """Accept the group's deletion; it goes when ``seconds`` have passed (the group answers
        GET meanwhile, provisioning state Deleting). A second DELETE gets the same operation."""
        with self.lock:
            if group.deleting is not None:
                return group.deleting
            operation = DeleteOperation(uuid.uuid4().hex, group.key, group.name, seconds)
            group.deleting = operation
            group.provisioning_state = "Deleting"
            self.operations[operation.id] = operation
        timer = threading.Timer(max(seconds, 0), self._end_delete, args=(group, operation))
        timer.daemon = True
        timer.start()
        return operation

    def _end_delete(self, group: Group, operation: DeleteOperation) -> None:
        try:
            self.delete(group)
        finally:
            operation.ended = _now()

    def operation(self, operation_id: str) -> DeleteOperation | None:
        return self.operations.get(operation_id.lower())

    def _remove_containers(self, group: Group) -> None:
        for container in self._containers(group):
            with contextlib.suppress(NotFound):
                container.remove(force=True)


def _config_map(container: dict) -> dict:
    properties = container.get("properties") or {}
    return dict(((properties.get("configMap") or {}).get("keyValuePairs")) or {})


def _check_config_maps(spec: dict) -> None:
    for container in spec.get("properties", {}).get("containers") or []:
        for key in _config_map(container):
            if not CONFIG_MAP_KEY.match(key):
                # Azure documents no rule for config map keys; here a key is a file name.
                raise GroupError(
                    "InvalidConfigMapKey",
                    f"The config map key '{key}' of container '{container.get('name')}' is not "
                    "a file name (letters, digits, '_', '.', '-'; local Azure's rule).",
                )


def _only_config_maps_differ(old: dict, new: dict) -> bool:
    """Whether two definitions of a group differ in their containers' config maps and nothing
    else (a PUT that changes nothing restarts the group, as Microsoft Learn says ACI does)."""

    def maps(spec: dict) -> list[dict]:
        return [_config_map(c) for c in spec.get("properties", {}).get("containers") or []]

    def rest(spec: dict) -> dict:
        copied = json.loads(json.dumps(spec))
        copied.pop("apiVersion", None)
        for container in copied.get("properties", {}).get("containers") or []:
            (container.get("properties") or {}).pop("configMap", None)
        return copied

    return rest(old) == rest(new) and maps(old) != maps(new)


def _view(container) -> dict:
    if container is None:
        return {"restartCount": 0, "currentState": {"state": "Waiting", "detailStatus": ""}}
    state = container.attrs["State"]
    started = state.get("StartedAt", "")
    restarts = container.attrs.get("RestartCount", 0)
    if state.get("Running") or state.get("Restarting"):
        current = {"state": "Running", "startTime": started, "detailStatus": ""}
    elif state.get("Status") == "created":
        current = {"state": "Waiting", "detailStatus": "ContainerCreating"}
    else:
        code = state.get("ExitCode", 0)
        current = {
            "state": "Terminated",
            "startTime": started,
            "finishTime": state.get("FinishedAt", ""),
            "exitCode": code,
            "detailStatus": "Completed" if code == 0 else "Error",
        }
    return {"restartCount": restarts, "currentState": current, "events": []}
