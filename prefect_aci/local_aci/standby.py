"""Azure Container Instances' standby pools, as Microsoft documents them ("Use standby pools",
"Request a container group from a standby pool", "Config maps") and the REST specs define them
(Microsoft.ContainerInstance 2025-09-01, Microsoft.StandbyPool 2026-04-01):

- Container group profiles (`Microsoft.ContainerInstance/containerGroupProfiles`): a group's
  definition without a name; every write is a new revision (`properties.revision`,
  `properties.registeredRevisions`, `.../revisions[/<n>]`; prefect_aci.local_aci.resources
  records them, so a template deploys them as any other type).
- Standby container group pools (`Microsoft.StandbyPool/standbyContainerGroupPools`): a controller
  (`StandbyPools`) keeps `elasticityProfile.maxReadyCapacity` members of the pool's profile
  revision (`containerGroupProperties.containerGroupProfile`, latest when no revision is given) on
  its `subnetIds` created and started as container groups (prefect_aci.local_aci.groups), hands out
  only Running ones, refills after a claim (`refillPolicy: always`), and drains and replaces them
  when the pool's profile or revision changes ("the pool will drain all existing instances and
  replaced them with new ones"). `runtimeViews/latest` counts them by state.
- Members are created as the first-party "Standby Pool Resource Provider" principal
  (LocalAzure.standby_pool_provider_principal_id), with the roles a template assigns it: without
  `containerGroups/write` (or the linked rights its members need, such as joining the subnet) the
  pool stays empty and its runtime view says why (Microsoft Learn: "Permission issues are a common
  cause of problems ... no instances appearing in the pool").
- A claim (`claim_problem`, `StandbyPools.create_group`) is a container group PUT at 2025-09-01
  naming the profile and the pool, carrying only location, tags, a user-assigned identity and
  config maps (anything else: 400 "ContainerGroup properties other than config map are not
  allowed", as Azure answered in Azure/azure-cli#30898); a Running member becomes the group, else
  a group is created from the profile (`isCreatedFromStandbyPool` false), or the claim fails when
  `failContainerGroupCreateOnReuseFailure` says so.

Choices where Azure's behaviour is not documented (docs/local-aci.md lists them):
- Members are not in the resource group's container group list or GET: they are the pool's, not
  the subscriber's, until claimed (Azure: not confirmed either way).
- A member that fails or whose containers end is replaced (Azure documents refill after a claim
  only). Members count in the region's core quota.
- The error of a claim that may not fall back: 409 `StandbyPoolEmpty` (LOCAL_REUSE_FAILURE).
"""

import copy
import json
import logging
import threading
import uuid
from dataclasses import dataclass, field

from prefect_aci.local_aci import container_rules
from prefect_aci.local_aci.authorization import (
    authorization_failed,
    group_write_refusal,
)
from prefect_aci.local_aci.config import LocalAzure
from prefect_aci.local_aci.directory import Directory
from prefect_aci.local_aci.groups import Group, GroupError, Groups
from prefect_aci.local_aci.resources import (
    CONTAINER_GROUP_PROFILES,
    STANDBY_POOLS,
    Recorded,
    ResourceStore,
    now,
    with_secure_values,
)
from prefect_aci.local_aci.schema import ENGINE_KEYS

CONTAINER_GROUPS = "Microsoft.ContainerInstance/containerGroups"
# The first api-version of container groups with standby pools and config maps (GA).
CLAIM_API_VERSION = "2025-09-01"
# What a claim may carry (Azure/azure-cli#30898 and its fix #31824; the REST spec's
# ContainerGroupCreateOrUpdateStandbyPool example; Learn's claim sample adds an identity).
CLAIM_KEYS = frozenset({"type", "apiVersion", "name", "location", "tags", "identity", "properties"})
CLAIM_PROPERTIES = frozenset({"containerGroupProfile", "standbyPoolProfile", "containers"})
NOT_ALLOWED = "ContainerGroup properties other than config map are not allowed"
# Local's choice: Azure documents no error for a claim that may not fall back to a create.
LOCAL_REUSE_FAILURE = ("StandbyPoolEmpty", 409)
# The resource group under which Groups keeps a pool's members (never a real group's name: '~').
MEMBERS = "standby-pool~"
# The Standby Pool Resource Provider's application id as third-party code gives it (Microsoft
# publishes none); only shown in refusals.
PROVIDER_APP_ID = "d4398a72-b879-49e5-9f3a-ff22c32efb42"
HEALTHY = "HealthState/healthy"
DEGRADED = "HealthState/degraded"


def api_has_standby(api_version: str) -> bool:
    """Whether container groups at ``api_version`` know profiles, pools and config maps."""
    return api_version[:10] >= CLAIM_API_VERSION


def is_claim(resource: dict) -> bool:
    """A container group write that names a profile or a standby pool."""
    properties = resource.get("properties")
    return isinstance(properties, dict) and bool(
        properties.get("containerGroupProfile") or properties.get("standbyPoolProfile")
    )


def claim_problem(resource: dict) -> str | None:
    """Why Azure refuses a claim's shape (400 BadRequest), None when it may be sent (a template's
    engine keys, such as `comments`, are the deployment's, not the request's)."""
    properties = resource.get("properties") or {}
    given = set(resource) - set(ENGINE_KEYS)
    if given - CLAIM_KEYS or set(properties) - CLAIM_PROPERTIES:
        return NOT_ALLOWED
    identity = resource.get("identity")
    if identity is not None and str(identity.get("type", "")).lower() != "userassigned":
        return NOT_ALLOWED
    for container in properties.get("containers") or []:
        inner = container.get("properties") or {}
        if set(container) - {"name", "properties"} or set(inner) - {"configMap"}:
            return NOT_ALLOWED
        if set(inner.get("configMap") or {}) - {"keyValuePairs"}:
            return NOT_ALLOWED
    if not (properties.get("containerGroupProfile") or {}).get("id"):
        return "A container group from a standby pool needs properties.containerGroupProfile.id."
    return None


@dataclass
class Member:
    group: Group
    profile_id: str
    revision: int


@dataclass
class PoolState:
    members: list[Member] = field(default_factory=list)
    retired: list[Group] = field(default_factory=list)  # being deleted
    status: tuple[str, str] = (HEALTHY, "The pool is healthy.")


class StandbyPools:
    """The pools' controller, and what a claim does with them."""

    def __init__(
        self, config: LocalAzure, groups: Groups, store: ResourceStore, tick_seconds: float = 0.5
    ) -> None:
        self.config = config
        self.groups = groups
        self.store = store
        self.directory = Directory(config, store)
        self.tick_seconds = tick_seconds
        self.pools: dict[str, PoolState] = {}
        self.lock = threading.RLock()
        self.wake = threading.Event()
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None
        store.listeners.append(self._heard)

    # -- the controller ---------------------------------------------------------------------------

    def start(self) -> "StandbyPools":
        self.thread = threading.Thread(target=self._loop, name="standby-pools", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopped.set()
        self.wake.set()
        if self.thread is not None:
            self.thread.join(timeout=10)

    def _heard(self, event: str, recorded: Recorded) -> None:
        if recorded.type.lower() in (STANDBY_POOLS.lower(), CONTAINER_GROUP_PROFILES.lower()):
            self.wake.set()

    def _loop(self) -> None:
        while not self.stopped.is_set():
            try:
                self.reconcile()
            except Exception:  # a defect of the stand-in must not stop the pools
                logging.getLogger("local-aci").exception("standby pools")
            self.wake.wait(self.tick_seconds)
            self.wake.clear()

    def reconcile(self) -> None:
        """Bring every pool to its capacity of its profile revision; drain pools that are gone."""
        with self.lock:
            pools = {p.id.lower(): p for p in self.store.by_type(STANDBY_POOLS)}
            for pool_id in list(self.pools):
                if pool_id not in pools:
                    state = self.pools[pool_id]
                    for member in state.members:
                        self._retire(state, member.group)
                    state.members.clear()
                    self._forget_retired(state)
                    if not state.retired:
                        del self.pools[pool_id]
            for pool_id, pool in pools.items():
                if pool_id not in self.pools:
                    self.pools[pool_id] = self._recovered(pool)
                self._reconcile_pool(self.pools[pool_id], pool)

    def _recovered(self, pool: Recorded) -> PoolState:
        """A pool's members that outlived an earlier run of the stand-in (Groups recovers them
        from their containers; the claimed ones are groups of their own)."""
        state = PoolState()
        for group in self.groups.all_in(f"{MEMBERS}{pool.body['name']}"):
            reference = group.spec.get("properties", {}).get("containerGroupProfile") or {}
            recoverable = group.deleting is None and reference.get("id")
            if recoverable and reference.get("revision") is not None:
                state.members.append(Member(group, reference["id"], int(reference["revision"])))
        return state

    def _reconcile_pool(self, state: PoolState, pool: Recorded) -> None:
        self._forget_retired(state)
        docker = self.groups.container_states()
        target = self._target(pool)
        if isinstance(target, str):
            for member in state.members:
                self._retire(state, member.group)
            state.members.clear()
            state.status = (DEGRADED, target)
            return
        profile, revision = target
        for member in list(state.members):
            changed = member.profile_id.lower() != profile.id.lower() or member.revision != revision
            gone = self.groups.get(member.group.resource_group, member.group.name) is None
            if changed or gone or _ended(member.group, docker.get(member.group.docker_key)):
                state.members.remove(member)
                self._retire(state, member.group)
        capacity = int((pool.properties.get("elasticityProfile") or {}).get("maxReadyCapacity", 0))
        while len(state.members) > capacity:
            waiting = [
                m for m in state.members if not _running(m.group, docker.get(m.group.docker_key))
            ]
            surplus = (waiting or state.members)[-1]
            state.members.remove(surplus)
            self._retire(state, surplus.group)
        state.status = (HEALTHY, "The pool is healthy.")
        while len(state.members) < capacity:
            resource = self._member_resource(pool, revision, profile)
            refused = self._refused_as_provider(resource)
            if refused is not None:
                state.status = (DEGRADED, refused)
                return
            try:
                group = self.groups.create(f"{MEMBERS}{pool.body['name']}", resource)
            except GroupError as exc:
                state.status = (DEGRADED, f"{exc.code}: {exc}")
                return
            state.members.append(Member(group, profile.id, revision))

    def _target(self, pool: Recorded) -> tuple[Recorded, int] | str:
        """The profile revision the pool keeps ready, or why it has none."""
        wanted = (pool.properties.get("containerGroupProperties") or {}).get(
            "containerGroupProfile"
        ) or {}
        profile = self.store.get(str(wanted.get("id", "")))
        if profile is None or profile.type.lower() != CONTAINER_GROUP_PROFILES.lower():
            return f"The container group profile '{wanted.get('id')}' was not found."
        revision = wanted.get("revision")
        revision = int(revision) if revision is not None else profile.properties["revision"]
        if self.store.get(f"{profile.id}/revisions/{revision}") is None:
            return f"The container group profile '{profile.id}' has no revision {revision}."
        return profile, revision

    def _member_resource(self, pool: Recorded, revision: int, profile: Recorded) -> dict:
        found = self.store.get(f"{profile.id}/revisions/{revision}")
        assert found is not None
        properties = _definition(found)
        subnets = (pool.properties.get("containerGroupProperties") or {}).get("subnetIds")
        if subnets:
            properties["subnetIds"] = copy.deepcopy(subnets)
        properties["containerGroupProfile"] = {"id": profile.id, "revision": revision}
        return {
            "type": CONTAINER_GROUPS,
            "apiVersion": CLAIM_API_VERSION,
            "name": f"standby-{uuid.uuid4().hex[:16]}",
            "location": pool.body.get("location") or self.config.location,
            "properties": properties,
        }

    def _refused_as_provider(self, resource: dict) -> str | None:
        """Azure RBAC for the Standby Pool Resource Provider's creation of a member."""
        principal = self.config.standby_pool_provider_principal_id
        group_id = self.config.resource_group_id
        member_id = f"{group_id}/providers/{CONTAINER_GROUPS}/{resource['name']}"
        authorization = self.directory.authorization()
        write = f"{CONTAINER_GROUPS}/write"
        if not authorization.allowed(principal, write, member_id):
            body = authorization_failed(PROVIDER_APP_ID, principal, write, member_id)
            return f"AuthorizationFailed: {body['error']['message']}"
        refused = group_write_refusal(
            authorization,
            PROVIDER_APP_ID,
            principal,
            member_id,
            resource,
            self.config.resource_group_id,
            self.directory.principal_of,
        )
        if refused is not None:
            error = refused[1]["error"]
            return f"{error['code']}: {error['message']}"
        return None

    def _retire(self, state: PoolState, group: Group) -> None:
        if self.groups.get(group.resource_group, group.name) is not None:
            self.groups.begin_delete(group, self.config.container_group_delete_seconds)
            state.retired.append(group)

    def _forget_retired(self, state: PoolState) -> None:
        state.retired = [
            g for g in state.retired if self.groups.get(g.resource_group, g.name) is not None
        ]

    def running(self, group: Group) -> bool:
        """Fully provisioned and every container running: what a pool hands out."""
        return _running(group, self.groups.container_states().get(group.docker_key))

    # -- what the pools answer ----------------------------------------------------------------

    def runtime_view(self, pool: Recorded) -> dict:
        """`runtimeViews/latest` (StandbyContainerGroupPoolRuntimeViewResource, 2026-04-01)."""
        with self.lock:
            state = self.pools.get(pool.id.lower()) or PoolState()
            docker = self.groups.container_states()
            running = sum(
                1 for m in state.members if _running(m.group, docker.get(m.group.docker_key))
            )
            creating = len(state.members) - running
            deleting = sum(
                1 for g in state.retired if self.groups.get(g.resource_group, g.name) is not None
            )
            code, message = state.status
        counts = [
            {"state": "Running", "count": running},
            {"state": "Creating", "count": creating},
            {"state": "Deleting", "count": deleting},
        ]
        return {
            "id": f"{pool.id}/runtimeViews/latest",
            "name": "latest",
            "type": f"{STANDBY_POOLS}/runtimeViews",
            "properties": {
                "instanceCountSummary": [{"instanceCountsByState": counts}],
                "provisioningState": "Succeeded",
                "status": {"code": code, "message": message},
            },
        }

    # -- claims -------------------------------------------------------------------------------

    def claim(self, pool_id: str, profile_id: str, revision: int) -> Group | None:
        """A Running member of the pool made from the profile revision, taken out of the pool
        (which refills); None when the pool has none ready."""
        with self.lock:
            state = self.pools.get(pool_id.lower())
            for member in list(state.members if state else []):
                same = member.profile_id.lower() == profile_id.lower()
                if same and member.revision == revision and self.running(member.group):
                    state.members.remove(member)  # type: ignore[union-attr]
                    self.wake.set()
                    return member.group
        return None

    def create_group(self, resource_group: str, resource: dict) -> Group:
        """A container group from a claim (``resource`` has passed claim_problem): a Running
        member of the pool under the requested name, else one created from the profile, or
        GroupError when there is none and the claim may not fall back."""
        properties = resource["properties"]
        profile = self.store.get(properties["containerGroupProfile"]["id"])
        if profile is None or profile.type.lower() != CONTAINER_GROUP_PROFILES.lower():
            raise GroupError(
                "ResourceNotFound",
                f"The container group profile '{properties['containerGroupProfile']['id']}' was "
                "not found.",
                404,
            )
        wanted = properties["containerGroupProfile"].get("revision")
        revision = int(wanted) if wanted is not None else profile.properties["revision"]
        found = self.store.get(f"{profile.id}/revisions/{revision}")
        if found is None:
            raise GroupError(
                "InvalidContainerGroupProfileRevision",
                f"The container group profile '{profile.id}' has no revision {revision} "
                f"(registered: {profile.properties.get('registeredRevisions')}).",
            )
        existing = self.groups.get(resource_group, resource["name"])
        if existing is not None:
            return self._update_claimed(existing, resource)
        spec = self._claimed_spec(resource, found, profile.id, revision)
        problems = container_rules.group_problems(spec["name"], spec, self.config.location)
        if problems:
            raise GroupError(problems[0].code, problems[0].message, problems[0].status)
        standby = properties.get("standbyPoolProfile") or {}
        member = None
        if standby.get("id"):
            pool = self.store.get(str(standby["id"]))
            if pool is None or pool.type.lower() != STANDBY_POOLS.lower():
                raise GroupError(
                    "ResourceNotFound",
                    f"The standby container group pool '{standby['id']}' was not found.",
                    404,
                )
            member = self.claim(pool.id, profile.id, revision)
        if member is not None:
            spec["properties"]["isCreatedFromStandbyPool"] = True
            return self.groups.adopt(member, resource_group, resource["name"], spec)
        if standby.get("failContainerGroupCreateOnReuseFailure") is True:
            code, status = LOCAL_REUSE_FAILURE
            raise GroupError(
                code,
                f"No container group of profile '{profile.id}' revision {revision} is ready in "
                f"the standby pool '{standby.get('id')}', and the request says not to create one "
                "(failContainerGroupCreateOnReuseFailure).",
                status,
            )
        spec["properties"]["isCreatedFromStandbyPool"] = False
        return self.groups.create(resource_group, spec)

    def _claimed_spec(self, resource: dict, found: Recorded, profile_id: str, revision: int):
        """The group a claim makes: the profile revision's definition, the claim's location,
        tags, identity and config maps, and the references it gave."""
        properties = _definition(found)
        given = {c.get("name"): c for c in resource["properties"].get("containers") or []}
        for container in properties.get("containers") or []:
            mapped = ((given.get(container["name"]) or {}).get("properties") or {}).get("configMap")
            if mapped is not None:
                container.setdefault("properties", {})["configMap"] = copy.deepcopy(mapped)
        unknown = sorted(set(given) - {c["name"] for c in properties.get("containers") or []})
        if unknown:
            # Azure: not documented (the config map path uses the profile's container name).
            raise GroupError(
                "BadRequest",
                f"The container(s) {', '.join(map(str, unknown))} are not in the container group "
                f"profile '{profile_id}' (local Azure's rule).",
            )
        properties["containerGroupProfile"] = {"id": profile_id, "revision": revision}
        if resource["properties"].get("standbyPoolProfile"):
            properties["standbyPoolProfile"] = copy.deepcopy(
                resource["properties"]["standbyPoolProfile"]
            )
        spec = {
            "type": CONTAINER_GROUPS,
            "apiVersion": resource.get("apiVersion", CLAIM_API_VERSION),
            "name": resource["name"],
            "location": resource.get("location") or self.config.location,
            "properties": properties,
        }
        for key in ("tags", "identity"):
            if resource.get(key) is not None:
                spec[key] = copy.deepcopy(resource[key])
        return spec

    def _update_claimed(self, group: Group, resource: dict) -> Group:
        """A claim's PUT again on the group it made: its config maps change in place."""
        reference = group.spec.get("properties", {}).get("containerGroupProfile") or {}
        asked = resource["properties"]["containerGroupProfile"]
        if str(reference.get("id", "")).lower() != str(asked["id"]).lower():
            # Azure: not documented (local's choice).
            raise GroupError(
                "Conflict",
                f"The container group '{group.name}' exists and was not made from the container "
                f"group profile '{asked['id']}'.",
                409,
            )
        spec = json.loads(json.dumps(group.spec))
        given = {c.get("name"): c for c in resource["properties"].get("containers") or []}
        for container in spec["properties"].get("containers") or []:
            mapped = ((given.get(container["name"]) or {}).get("properties") or {}).get("configMap")
            if mapped is not None:
                container.setdefault("properties", {})["configMap"] = copy.deepcopy(mapped)
        for key in ("tags",):
            if resource.get(key) is not None:
                spec[key] = copy.deepcopy(resource[key])
        return self.groups.create(group.resource_group, spec)


def _running(group: Group, states: list[dict] | None) -> bool:
    """``group`` fully provisioned with every container running (Docker's ``states`` of its
    containers)."""
    if group.provisioning_state != "Succeeded" or group.deleting is not None or not states:
        return False
    expected = len(group.spec.get("properties", {}).get("containers") or [])
    return len(states) >= expected and all(s.get("Running") for s in states)


def _ended(group: Group, states: list[dict] | None) -> bool:
    """``group`` failed, or one of its containers ended."""
    if group.provisioning_state == "Failed":
        return True
    if group.provisioning_state != "Succeeded":
        return False
    return any(
        not s.get("Running") and not s.get("Restarting") and s.get("Status") != "created"
        for s in states or []
    )


def _definition(revision: Recorded) -> dict:
    """A profile revision's group properties, its secure values included, without what the
    profile's provider adds."""
    properties = with_secure_values(revision.body.get("properties") or {}, revision.secret)
    for key in ("revision", "registeredRevisions", "provisioningState"):
        properties.pop(key, None)
    return properties


# -- operations of the StandbyPool provider (PUT and DELETE are long-running) ---------------------


@dataclass
class PoolOperation:
    id: str
    resource_id: str
    started: str = field(default_factory=now)

    def body(self, operation_url_id: str) -> dict:
        return {
            "id": operation_url_id,
            "name": self.id,
            "resourceId": self.resource_id,
            "status": "Succeeded",
            "startTime": self.started,
            "endTime": self.started,
        }
