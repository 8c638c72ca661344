"""The resources local Resource Manager has deployed, recorded with the GET shape Azure's providers
give them, in one store the app and the other stand-ins read.

What a template says is what a provider keeps, plus what the provider makes itself: a resource id,
`provisioningState` where the provider's REST spec has one, an identity's tenantId, principalId
and clientId, a vault's `vaultUri`, a registry's `loginServer`, a storage account's endpoints, a
public IP's address. Write-only values (a vault secret's value) are never in the GET body: they
are kept beside it (`Recorded.secret`) for the stand-in that serves them. A resource deployed
again keeps what its provider made the first time (an identity keeps its principal).

A later step gives recorded resources a local runtime through `ResourceStore.by_type` (what there
is now) and `ResourceStore.listeners` (told of each resource recorded or removed).
"""

import copy
import datetime
import hashlib
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prefect_aci.local_aci.expressions import TemplateError

if TYPE_CHECKING:  # paging reaches this module through resource_manager
    from prefect_aci.local_aci.paging import Pager

ROLE_DEFINITIONS = "Microsoft.Authorization/roleDefinitions"
ROLE_ASSIGNMENTS = "Microsoft.Authorization/roleAssignments"
IDENTITIES = "Microsoft.ManagedIdentity/userAssignedIdentities"
VAULTS = "Microsoft.KeyVault/vaults"
VAULT_SECRETS = "Microsoft.KeyVault/vaults/secrets"
REGISTRIES = "Microsoft.ContainerRegistry/registries"
STORAGE_ACCOUNTS = "Microsoft.Storage/storageAccounts"
PUBLIC_IPS = "Microsoft.Network/publicIPAddresses"
NAT_GATEWAYS = "Microsoft.Network/natGateways"
VIRTUAL_NETWORKS = "Microsoft.Network/virtualNetworks"
SUBNETS = "Microsoft.Network/virtualNetworks/subnets"
CONTAINER_GROUP_PROFILES = "Microsoft.ContainerInstance/containerGroupProfiles"
PROFILE_REVISIONS = "Microsoft.ContainerInstance/containerGroupProfiles/revisions"
STANDBY_POOLS = "Microsoft.StandbyPool/standbyContainerGroupPools"
# Keys of a template resource that are the engine's, or the request's, not the resource's.
NOT_RECORDED = ("apiVersion", "dependsOn", "condition", "comments", "scope", "metadata", "copy")
# Types whose GET body has properties.provisioningState (their REST specs): identities, role
# definitions and assignments, vault secrets and blob services and containers have none.
PROVISIONED = {
    t.lower()
    for t in (
        PUBLIC_IPS,
        NAT_GATEWAYS,
        VIRTUAL_NETWORKS,
        SUBNETS,
        VAULTS,
        REGISTRIES,
        STORAGE_ACCOUNTS,
        STANDBY_POOLS,
    )
}
# Types without a location in their GET body.
UNLOCATED = {t.lower() for t in (ROLE_DEFINITIONS, ROLE_ASSIGNMENTS, VAULT_SECRETS, SUBNETS)}
# Values that change on every PUT and say nothing about what the resource is (what-if ignores them).
VOLATILE = frozenset({"updatedOn", "updated", "updatedBy", "lastModifiedAt"})


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


def resource_path(resource_type: str, name: str) -> str:
    """providers/<namespace>/<type>/<name>[/<child type>/<child name>...] of a template resource,
    whose name holds one segment per type segment (vault/secret)."""
    namespace, *types = resource_type.split("/")
    names = name.split("/")
    if not types or len(types) != len(names):
        raise TemplateError(
            f"The template resource '{name}' for type '{resource_type}' has incorrect segment "
            "lengths. A nested resource type must have identical number of segments as its "
            "resource name. A root resource type must have segment length one greater than its "
            "resource name."
        )
    return f"providers/{namespace}/" + "/".join(
        f"{t}/{n}" for t, n in zip(types, names, strict=True)
    )


def template_id(subscription: str, resource_group: str, resource: dict) -> str:
    """The id the template's own resourceId()/extensionResourceId() give this resource."""
    base = resource.get("scope") or f"/subscriptions/{subscription}/resourceGroups/{resource_group}"
    return f"{str(base).rstrip('/')}/{resource_path(resource['type'], resource['name'])}"


def azure_id(subscription: str, resource_group: str, resource: dict) -> str:
    """The id Resource Manager gives the resource: role definitions live at the subscription,
    whatever group the template that made them was deployed to."""
    if resource["type"].lower() == ROLE_DEFINITIONS.lower():
        return f"/subscriptions/{subscription}/{resource_path(resource['type'], resource['name'])}"
    return template_id(subscription, resource_group, resource)


@dataclass
class Recorded:
    id: str
    type: str
    body: dict  # the GET body
    deployment: str  # the deployment that made it last
    secret: Any = None  # a write-only value the GET body never shows (a vault secret's value)
    aliases: tuple[str, ...] = ()  # other ids that name it (a role definition's group-level one)

    @property
    def properties(self) -> dict:
        return self.body.get("properties") or {}


@dataclass
class Context:
    """What the providers know when they record a resource."""

    subscription_id: str
    resource_group: str
    tenant_id: str
    deployment: str
    caller: str = ""  # the deploying principal's object id
    # Where every storage account's blobs are served (Azurite), when the stack has Blob storage.
    blob_endpoint: str | None = None


@dataclass
class ResourceStore:
    resources: dict[str, Recorded] = field(default_factory=dict)  # id lower-case -> resource
    aliases: dict[str, str] = field(default_factory=dict)  # alias lower-case -> id lower-case
    listeners: list[Callable[[str, Recorded], None]] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def get(self, resource_id: str) -> Recorded | None:
        key = str(resource_id).rstrip("/").lower()
        with self.lock:
            return self.resources.get(self.aliases.get(key, key))

    def body(self, resource_id: str) -> dict | None:
        found = self.get(resource_id)
        return copy.deepcopy(found.body) if found else None

    def by_type(self, resource_type: str) -> list[Recorded]:
        with self.lock:
            return [r for r in self.resources.values() if r.type.lower() == resource_type.lower()]

    def under(self, parent_id: str, resource_type: str | None = None) -> list[Recorded]:
        """The resources whose id starts with ``parent_id`` (of ``resource_type`` if given)."""
        prefix = parent_id.rstrip("/").lower() + "/"
        with self.lock:
            return [
                r
                for key, r in sorted(self.resources.items())
                if key.startswith(prefix)
                and (resource_type is None or r.type.lower() == resource_type.lower())
            ]

    def put(self, recorded: Recorded) -> None:
        with self.lock:
            key = recorded.id.lower()
            self.resources[key] = recorded
            for alias in recorded.aliases:
                self.aliases[alias.lower()] = key
            listeners = list(self.listeners)
        for listener in listeners:
            listener("recorded", recorded)

    def remove(self, resource_id: str) -> Recorded | None:
        with self.lock:
            found = self.get(resource_id)
            if found is None:
                return None
            self.resources.pop(found.id.lower(), None)
            for alias in found.aliases:
                self.aliases.pop(alias.lower(), None)
            listeners = list(self.listeners)
        for listener in listeners:
            listener("removed", found)
        return found

    def remove_tree(self, resource_id: str) -> Recorded | None:
        """Remove a resource and every resource under it (as Azure deletes a resource's child
        resources with it); the removed resource, or None when there was none."""
        removed = self.remove(resource_id)
        if removed is not None:
            for child in self.under(removed.id):
                self.remove(child.id)
        return removed

    def copy(self) -> "ResourceStore":
        """A copy without listeners, for a what-if to deploy into."""
        with self.lock:
            return ResourceStore(copy.deepcopy(self.resources), dict(self.aliases))

    def record(self, resource: dict, context: Context) -> Recorded:
        """Record one evaluated template resource as its provider would keep it."""
        previous = self.get(_azure_id_of(resource, context))
        recorded = shape(resource, context, previous)
        _identity(recorded.body, previous, self, context)
        if recorded.type.lower() == CONTAINER_GROUP_PROFILES.lower():
            # The revision first: whoever the profile's record wakes finds it.
            self.put(revision_of(recorded))
        self.put(recorded)
        if recorded.type.lower() == VIRTUAL_NETWORKS.lower():
            for subnet in subnets_of(recorded):
                self.put(subnet)
        return recorded


def _azure_id_of(resource: dict, context: Context) -> str:
    return azure_id(context.subscription_id, context.resource_group, resource)


def _stable_guid(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(parts)))


def shape(resource: dict, context: Context, previous: Recorded | None) -> Recorded:
    """The GET body of an evaluated template resource, with what its provider makes."""
    kind = resource["type"]
    rid = azure_id(context.subscription_id, context.resource_group, resource)
    aliases = tuple(
        alias
        for alias in {template_id(context.subscription_id, context.resource_group, resource)}
        if alias.lower() != rid.lower()
    )
    body = {"id": rid, "name": resource["name"].split("/")[-1], "type": kind}
    body |= {
        k: copy.deepcopy(v)
        for k, v in resource.items()
        if k not in NOT_RECORDED and k not in ("id", "name", "type")
    }
    if kind.lower() in UNLOCATED:
        body.pop("location", None)
    properties = body.setdefault("properties", {})
    made = (previous.properties if previous else {}) or {}
    secret = None
    match kind.lower():
        case k if k == IDENTITIES.lower():
            properties.update(
                tenantId=context.tenant_id,
                principalId=made.get("principalId") or str(uuid.uuid4()),
                clientId=made.get("clientId") or str(uuid.uuid4()),
                isolationScope=properties.get("isolationScope", "None"),
            )
        case k if k == ROLE_DEFINITIONS.lower():
            properties.setdefault("type", "CustomRole")
            properties["permissions"] = [
                {
                    "actions": p.get("actions", []),
                    "notActions": p.get("notActions", []),
                    "dataActions": p.get("dataActions", []),
                    "notDataActions": p.get("notDataActions", []),
                    **({"condition": p["condition"]} if "condition" in p else {}),
                }
                for p in properties.get("permissions", [])
            ]
            _audit(properties, made, context)
        case k if k == ROLE_ASSIGNMENTS.lower():
            scope = resource.get("scope") or (
                f"/subscriptions/{context.subscription_id}/resourceGroups/{context.resource_group}"
            )
            properties["roleDefinitionId"] = _role_definition_id(
                str(properties.get("roleDefinitionId", "")), context.subscription_id
            )
            properties.setdefault("principalType", None)
            properties["scope"] = scope
            for key in ("condition", "conditionVersion", "delegatedManagedIdentityResourceId"):
                properties.setdefault(key, None)
            _audit(properties, made, context)
        case k if k == VAULTS.lower():
            properties["vaultUri"] = f"https://{body['name']}.vault.azure.net/"
            properties.setdefault("accessPolicies", [])
        case k if k == VAULT_SECRETS.lower():
            secret = properties.pop("value", None)
            vault = resource["name"].split("/")[0]
            version = (
                made.get("secretUriWithVersion", "").rsplit("/", 1)[-1]
                if previous and previous.secret == secret
                else uuid.uuid4().hex
            )
            uri = f"https://{vault}.vault.azure.net/secrets/{body['name']}"
            properties.update(secretUri=uri, secretUriWithVersion=f"{uri}/{version}")
            stamp = int(datetime.datetime.now(datetime.UTC).timestamp())
            properties["attributes"] = {
                "enabled": True,
                "created": (made.get("attributes") or {}).get("created", stamp),
                "updated": stamp,
            }
        case k if k == REGISTRIES.lower():
            properties["loginServer"] = f"{body['name'].lower()}.azurecr.io"
            properties.setdefault("adminUserEnabled", False)
            properties["creationDate"] = made.get("creationDate") or now()
        case k if k == STORAGE_ACCOUNTS.lower():
            name = body["name"]
            properties["primaryEndpoints"] = {
                service: f"https://{name}.{service}.core.windows.net/"
                for service in ("blob", "queue", "table", "file", "dfs", "web")
            }
            if context.blob_endpoint:
                # The account is Azurite's: its blobs are there, whatever the account's name.
                properties["primaryEndpoints"]["blob"] = context.blob_endpoint.rstrip("/") + "/"
            properties["primaryLocation"] = body.get("location")
            properties["statusOfPrimary"] = "available"
            properties["creationTime"] = made.get("creationTime") or now()
        case k if k == PUBLIC_IPS.lower():
            properties.setdefault("publicIPAddressVersion", "IPv4")
            properties.setdefault("idleTimeoutInMinutes", 4)
            # An address in TEST-NET-3 (RFC 5737), stable for the resource: none is reachable.
            octet = int(hashlib.sha256(rid.lower().encode()).hexdigest(), 16) % 254 + 1
            properties["ipAddress"] = made.get("ipAddress") or f"203.0.113.{octet}"
        case k if k == VIRTUAL_NETWORKS.lower():
            for subnet in properties.get("subnets") or []:
                subnet["id"] = f"{rid}/subnets/{subnet.get('name')}"
                subnet["type"] = SUBNETS
                subnet.setdefault("properties", {})["provisioningState"] = "Succeeded"
    if kind.lower() == CONTAINER_GROUP_PROFILES.lower():
        secret = _secure_values(properties, previous.secret if previous else None)
        # Every write is a new revision (REST spec examples: a create answers revision 1, a
        # PATCH of tags alone 2); whether a PUT that changes nothing makes one is not documented:
        # here it does.
        revision = int(made.get("revision") or 0) + 1
        properties["revision"] = revision
        properties["registeredRevisions"] = [*(made.get("registeredRevisions") or []), revision]
    if kind.lower() in PROVISIONED:
        if kind.lower().startswith("microsoft.network/"):
            properties["resourceGuid"] = made.get("resourceGuid") or _stable_guid(rid)
        properties["provisioningState"] = "Succeeded"
    return Recorded(rid, kind, body, context.deployment, secret, aliases)


def _identity(body: dict, previous: Recorded | None, store: "ResourceStore", context: Context):
    """A resource's managed identities as Azure answers them: each user-assigned one with its
    principalId and clientId, a system-assigned one with the principal made for it."""
    identity = body.get("identity")
    if not isinstance(identity, dict):
        return
    kind = str(identity.get("type", "")).lower()
    if "systemassigned" in kind:
        made = (previous.body.get("identity") or {}) if previous else {}
        identity["principalId"] = made.get("principalId") or str(uuid.uuid4())
        identity["tenantId"] = context.tenant_id
    for resource_id in list(identity.get("userAssignedIdentities") or {}):
        found = store.get(resource_id)
        identity["userAssignedIdentities"][resource_id] = (
            {k: found.properties.get(k) for k in ("principalId", "clientId")} if found else {}
        )


def _audit(properties: dict, made: dict, context: Context) -> None:
    stamp = now()
    properties["createdOn"] = made.get("createdOn") or stamp
    properties["updatedOn"] = stamp
    properties["createdBy"] = made.get("createdBy") or context.caller or None
    properties["updatedBy"] = context.caller or None


def _role_definition_id(value: str, subscription: str) -> str:
    """A role definition's id as Azure answers it: at the subscription (a template may name a
    custom role with resourceId(), which puts it in the resource group)."""
    marker = "/providers/microsoft.authorization/roledefinitions/"
    at = value.lower().find(marker)
    if at < 0:
        return value
    role = value[at + len(marker) :]
    return f"/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/{role}"


def _secure_values(properties: dict, kept: dict | None) -> dict:
    """A profile's secure environment values, taken out of its GET body (ACI never shows one)
    and kept beside it, by container and variable; a variable a write names without a value
    (a PATCH, which sends the body as read) keeps the one it had."""
    found: dict = {}
    for container in properties.get("containers") or []:
        name = container.get("name")
        for variable in (container.get("properties") or {}).get("environmentVariables") or []:
            if not isinstance(variable, dict):
                continue
            value = variable.pop("secureValue", None)
            had = ((kept or {}).get(name) or {}).get(variable.get("name"))
            if value is None and "value" not in variable and had is not None:
                value = had
            if value is not None:
                found.setdefault(name, {})[variable.get("name")] = value
    return found


def with_secure_values(properties: dict, secret: dict | None) -> dict:
    """A profile's properties with the secure environment values kept beside its body."""
    filled = copy.deepcopy(properties)
    for container in filled.get("containers") or []:
        values = (secret or {}).get(container.get("name")) or {}
        for variable in (container.get("properties") or {}).get("environmentVariables") or []:
            if isinstance(variable, dict) and variable.get("name") in values:
                variable["secureValue"] = values[variable["name"]]
    return filled


def revision_of(profile: Recorded) -> Recorded:
    """A container group profile's current revision as `.../revisions/<n>` answers it: the
    profile as it was written then (its id and name the revision's: local's choice, the REST
    spec's examples do not show one)."""
    revision = profile.properties["revision"]
    body = copy.deepcopy(profile.body)
    body.update(id=f"{profile.id}/revisions/{revision}", name=str(revision), type=PROFILE_REVISIONS)
    body["properties"].pop("registeredRevisions", None)
    return Recorded(body["id"], PROFILE_REVISIONS, body, profile.deployment, profile.secret)


def subnets_of(recorded: Recorded) -> list[Recorded]:
    """A virtual network's inline subnets, each its own resource as the Network provider answers
    GET .../subnets/<name>."""
    found = []
    for subnet in recorded.properties.get("subnets") or []:
        body = copy.deepcopy(subnet)
        found.append(Recorded(body["id"], SUBNETS, body, recorded.deployment))
    return found


def comparable(node: Any) -> Any:
    """A body without the values every PUT changes: equal when a what-if finds no change."""
    if isinstance(node, dict):
        return {k: comparable(v) for k, v in node.items() if k not in VOLATILE}
    if isinstance(node, list):
        return [comparable(item) for item in node]
    return node


def split_path(path: str) -> tuple[str, str, str | None] | None:
    """(parent id, resource type, name or None for a list) of a Resource Manager path: the part
    after its last /providers/ is <namespace>/<type>[/<name>/<child type>...]."""
    path = path.rstrip("/")
    at = path.lower().rfind("/providers/")
    if at < 0:
        return None
    namespace, *rest = path[at + len("/providers/") :].split("/")
    if not rest:
        return None
    types, names = rest[0::2], rest[1::2]
    name = names.pop() if len(names) == len(types) else None
    parent = path[:at]
    if names:
        # A child type: the parent is the resource the names before the last one make.
        parent = f"{parent}/providers/{namespace}/" + "/".join(
            f"{t}/{n}" for t, n in zip(types[:-1], names, strict=True)
        )
    return parent, f"{namespace}/{'/'.join(types)}", name


def not_found(resource_type: str, name: str, path: str) -> dict:
    """Resource Manager's 404 for a resource (the Authorization provider's own codes for roles)."""
    if resource_type.lower() == ROLE_DEFINITIONS.lower():
        code = "RoleDefinitionDoesNotExist"
        message = f"The specified role definition with ID '{name}' does not exist."
    elif resource_type.lower() == ROLE_ASSIGNMENTS.lower():
        code = "RoleAssignmentNotFound"
        message = f"The role assignment '{name}' is not found."
    else:
        group = path.split("/")[4] if path.lower().startswith("/subscriptions/") else ""
        code = "ResourceNotFound"
        message = (
            f"The Resource '{resource_type}/{name}' under resource group '{group}' was not "
            "found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
        )
    return {"error": {"code": code, "message": message}}


def resource_request(
    path: str, store: ResourceStore, pager: "Pager | None" = None
) -> tuple[int, dict] | None:
    """The answer to GET ``path``: one recorded resource, or the list of a type under its parent
    (role assignments listed at a scope include those below it), the page ``pager`` asks for
    (all of it without one); None when the path names no resource type."""
    found = split_path(path)
    if found is None:
        return None
    parent, resource_type, name = found
    if name is None:
        if resource_type.lower() == ROLE_DEFINITIONS.lower():
            listed = store.by_type(ROLE_DEFINITIONS)
        else:
            listed = store.under(parent, resource_type)
        entries = [(r.id.lower(), copy.deepcopy(r.body)) for r in listed]
        if pager is None:
            return 200, {"value": [body for _, body in sorted(entries, key=lambda e: e[0])]}
        return 200, pager.page(entries)
    recorded = store.get(path)
    if recorded is None and resource_type.lower() == ROLE_DEFINITIONS.lower():
        # A role definition is read at any scope; it lives at the subscription.
        subscription = path.split("/")[2] if path.lower().startswith("/subscriptions/") else ""
        recorded = store.get(f"/subscriptions/{subscription}/providers/{ROLE_DEFINITIONS}/{name}")
    if recorded is None:
        return 404, not_found(resource_type, name, path)
    return 200, copy.deepcopy(recorded.body)
