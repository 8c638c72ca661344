"""Azure role-based access control as Resource Manager and Key Vault evaluate it: role definitions
and role assignments as data in ARM's own shapes, and a decision per (principal, action, scope).

- A role definition is ARM's GET body of `Microsoft.Authorization/roleDefinitions`: an `id` (at the
  tenant, `/providers/Microsoft.Authorization/roleDefinitions/<guid>`, or under a subscription or
  any scope: Azure names a definition by its GUID, so only the last segment counts), and
  `properties.permissions[]` with `actions`, `notActions`, `dataActions`, `notDataActions`.
  Built-in roles come from builtin_roles.json (Microsoft Learn's "Azure built-in roles" pages, the
  page of each role in its `source`).
- A role assignment is ARM's GET body of `Microsoft.Authorization/roleAssignments`:
  `properties.roleDefinitionId`, `properties.principalId`, `properties.scope` (and `createdOn`).
- The decision (Microsoft Learn, "Understand Azure role definitions" and "How Azure RBAC
  determines if a user has access to a resource"): the union of the principal's assignments
  whose scope is the target scope or above it, compared by path segments without regard to case
  (a role on `/resourceGroups/rg` does not hold on `/resourceGroups/rg2`). A permission block
  grants an action matched by one of its `actions` and by none of its `notActions` (`notActions`
  subtract from that block only; they are not a deny). Data actions are matched against
  `dataActions`/`notDataActions` only: `"actions": ["*"]` (Owner) grants no data action.
  `*` matches any run of characters, `/` included, case-insensitively (`*/read`,
  `Microsoft.ContainerInstance/*`). A `/*/` segment also matches no segment: not documented,
  inferred from Managed Identity Operator ("Read and Assign User Assigned Identity"), whose only
  assign entry is `userAssignedIdentities/*/assign/action` while the action is
  `userAssignedIdentities/assign/action`.
- Role assignments are eventually consistent on Azure (Microsoft Learn, "Troubleshoot Azure
  RBAC": up to 10 minutes): with a delay set, an assignment holds only that long after its
  `createdOn`.
"""

import json
import re
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

BUILTIN_ROLES_FILE = Path(__file__).with_name("builtin_roles.json")
ROLE_DEFINITIONS = "Microsoft.Authorization/roleDefinitions"
ROLE_ASSIGNMENTS = "Microsoft.Authorization/roleAssignments"

# Built-in roles by their well-known ids (the same on every tenant).
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
USER_ACCESS_ADMINISTRATOR = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"
ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
ACR_PUSH = "8311e382-0749-4cb8-b61a-304f252e45ec"
ACR_DELETE = "c2f4ef07-c644-48eb-af81-4b1b4947fb11"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
KEY_VAULT_SECRETS_OFFICER = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"
KEY_VAULT_ADMINISTRATOR = "00482a5a-887f-4fb3-b363-3b7fe8e74483"
STORAGE_BLOB_DATA_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
MANAGED_IDENTITY_OPERATOR = "f1a07417-d97a-45cb-824c-7a7467783830"

# Actions the local stand-ins check beyond a request's own.
ASSIGN_IDENTITY = "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action"
JOIN_SUBNET = "Microsoft.Network/virtualNetworks/subnets/join/action"
# A container group from a profile (a standby pool claim) reads the profile: a linked check, as
# Azure answered 403 LinkedAuthorizationFailed on it (Azure/azure-cli's recording
# test_container_reuse_from_standbypool.yaml).
READ_PROFILE = "Microsoft.ContainerInstance/containerGroupProfiles/read"
ACR_PULL_ACTION = "Microsoft.ContainerRegistry/registries/pull/read"
GET_SECRET = "Microsoft.KeyVault/vaults/secrets/getSecret/action"  # noqa: S105 (an action)
READ_SECRET_METADATA = "Microsoft.KeyVault/vaults/secrets/readMetadata/action"  # noqa: S105 (an action)
SET_SECRET = "Microsoft.KeyVault/vaults/secrets/setSecret/action"  # noqa: S105 (an action)
DELETE_SECRET = "Microsoft.KeyVault/vaults/secrets/delete"  # noqa: S105 (an action)


@cache
def _builtin_document() -> dict:
    return json.loads(BUILTIN_ROLES_FILE.read_text())


def builtin_roles() -> list[dict]:
    """The built-in role definitions, in ARM's GET shape (each with its `source` page)."""
    return json.loads(json.dumps(_builtin_document()["roles"]))


def definition_id(subscription_id: str, role: str) -> str:
    """A role definition's id under a subscription, as `subscriptionResourceId()` gives it."""
    return f"/subscriptions/{subscription_id}/providers/{ROLE_DEFINITIONS}/{role}"


def role_guid(role_definition_id: str) -> str:
    """The GUID that names a role definition, from any of its ids (or the GUID itself)."""
    return role_definition_id.rstrip("/").rsplit("/", 1)[-1].lower()


def assignment(
    principal_id: str, role_definition_id: str, scope: str, created_on: str | None = None
) -> dict:
    """A role assignment in ARM's GET shape (its name is a fresh GUID unless given by a
    template)."""
    name = str(uuid.uuid4())
    return {
        "id": f"{scope.rstrip('/')}/providers/{ROLE_ASSIGNMENTS}/{name}",
        "name": name,
        "type": ROLE_ASSIGNMENTS,
        "properties": {
            "roleDefinitionId": role_definition_id,
            "principalId": principal_id,
            "principalType": "ServicePrincipal",
            "scope": scope,
            "createdOn": created_on or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        },
    }


def segments(path: str) -> list[str]:
    return [s.lower() for s in path.split("/") if s]


def covers(assigned_scope: str, target_scope: str) -> bool:
    """An assignment at ``assigned_scope`` holds at ``target_scope``: the same path or a path
    below it, segment by segment, without regard to case (`/` covers everything)."""
    above, below = segments(assigned_scope), segments(target_scope)
    return below[: len(above)] == above


@cache
def _pattern(wildcard: str) -> re.Pattern:
    parts = []
    for piece in re.split(r"(/\*/|\*)", wildcard):
        if piece == "/*/":
            parts.append("/(?:.*/)?")
        elif piece == "*":
            parts.append(".*")
        else:
            parts.append(re.escape(piece))
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def matches(wildcard: str, action: str) -> bool:
    """``action`` matched by an entry of a role's `actions` (or `notActions`, ...)."""
    return _pattern(wildcard).fullmatch(action) is not None


def _grants(permission: dict, action: str, data_action: bool) -> bool:
    allow, deny = ("dataActions", "notDataActions") if data_action else ("actions", "notActions")
    return any(matches(a, action) for a in permission.get(allow) or []) and not any(
        matches(a, action) for a in permission.get(deny) or []
    )


def _properties(resource: dict) -> dict:
    return resource.get("properties") or {}


def _created(resource: dict) -> float | None:
    created = _properties(resource).get("createdOn")
    if not created:
        return None
    try:
        return datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def assignment_scope(resource: dict) -> str:
    """Where an assignment holds: its `properties.scope`, or the scope its id is under."""
    scope = _properties(resource).get("scope")
    if scope:
        return scope
    resource_id = resource.get("id", "")
    marker = f"/providers/{ROLE_ASSIGNMENTS}/".lower()
    at = resource_id.lower().rfind(marker)
    return (resource_id[:at] or "/") if at >= 0 else "/"


@dataclass
class Authorization:
    """The role definitions (built-in and custom) and role assignments of a local Azure."""

    definitions: list[dict] = field(default_factory=list)
    assignments: list[dict] = field(default_factory=list)
    delay_seconds: float = 0.0
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self.definitions = [*builtin_roles(), *self.definitions]

    def definition(self, role_definition_id: str) -> dict | None:
        """The role definition an id names (custom roles win over a built-in of the same GUID,
        which Azure does not allow to exist)."""
        wanted = role_guid(role_definition_id)
        found = [
            d for d in self.definitions if role_guid(d.get("name") or d.get("id", "")) == wanted
        ]
        return found[-1] if found else None

    def effective(self, resource: dict) -> bool:
        if self.delay_seconds <= 0:
            return True
        created = _created(resource)
        return created is None or self.clock() >= created + self.delay_seconds

    def assignments_of(self, principal_id: str) -> Iterable[dict]:
        wanted = principal_id.lower()
        for resource in self.assignments:
            principal = str(_properties(resource).get("principalId", "")).lower()
            if principal == wanted and self.effective(resource):
                yield resource

    def allowed(
        self, principal_id: str, action: str, scope: str, data_action: bool = False
    ) -> bool:
        """May ``principal_id`` perform ``action`` (a data action if ``data_action``) on
        ``scope``: any effective assignment above or at the scope whose role grants it."""
        for resource in self.assignments_of(principal_id):
            if not covers(assignment_scope(resource), scope):
                continue
            role = self.definition(_properties(resource).get("roleDefinitionId", ""))
            if role is None:
                continue
            if any(
                _grants(p, action, data_action) for p in _properties(role).get("permissions") or []
            ):
                return True
        return False

    def missing(
        self, principal_id: str, needed: Iterable[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        """Of (action, scope) pairs, those ``principal_id`` may not perform."""
        return [(a, s) for a, s in needed if not self.allowed(principal_id, a, s)]


# -- requests and their actions ------------------------------------------------------------------

# Resource Manager's spelling of the types and actions local ACI serves (paths arrive in any case).
_SPELLING = {
    s.lower(): s
    for s in (
        "Microsoft.Resources",
        "Microsoft.ContainerInstance",
        "Microsoft.ContainerRegistry",
        "Microsoft.KeyVault",
        "Microsoft.ManagedIdentity",
        "Microsoft.Network",
        "Microsoft.Storage",
        "Microsoft.Authorization",
        "Microsoft.StandbyPool",
        "subscriptions",
        "resourceGroups",
        "deployments",
        "operationStatuses",
        "whatIf",
        "locations",
        "operationResults",
        "containerGroups",
        "containerGroupProfiles",
        "revisions",
        "standbyContainerGroupPools",
        "runtimeViews",
        "containers",
        "logs",
        "stop",
        "start",
        "restart",
        "roleDefinitions",
        "roleAssignments",
        "userAssignedIdentities",
        "virtualNetworks",
        "subnets",
        "vaults",
        "secrets",
        "registries",
        "storageAccounts",
        "blobServices",
        "natGateways",
        "publicIPAddresses",
    )
}


def _spelled(name: str) -> str:
    return _SPELLING.get(name.lower(), name)


_VERB = {"GET": "read", "HEAD": "read", "PUT": "write", "PATCH": "write", "DELETE": "delete"}


@dataclass(frozen=True)
class RequestAction:
    """The action a Resource Manager request needs, and the scope it needs it on."""

    action: str
    scope: str


def request_action(method: str, path: str) -> RequestAction:
    """The Azure action of a Resource Manager request and the scope it is checked on.

    The resource type is read from the path as ARM does: the namespace after the last
    `providers` segment, then type/name pairs. An odd tail is a collection (GET: list, `read`)
    or, for POST, an action on the resource before it (`containerGroups/stop/action`,
    `deployments/whatIf/action`). Paths without a provider are the subscription's
    (`Microsoft.Resources/subscriptions/resourceGroups/...`)."""
    method = method.upper()
    parts = [p for p in path.split("/") if p]
    lowered = [p.lower() for p in parts]
    if "providers" in lowered:
        at = len(lowered) - 1 - lowered[::-1].index("providers")
        namespace, rest = (parts[at + 1] if at + 1 < len(parts) else ""), parts[at + 2 :]
        base = parts[: at + 2]
        types = [_spelled(namespace)]
    else:
        # /subscriptions/{id}[/resourceGroups/{name}[/...]]
        rest, base = parts, []
        types = ["Microsoft.Resources"]
    pairs = rest[0::2]
    odd = len(rest) % 2 == 1
    if odd:
        if method == "POST":
            types += [_spelled(t) for t in pairs[:-1]] + [_spelled(pairs[-1]), "action"]
        else:
            types += [_spelled(t) for t in pairs] + [_VERB.get(method, "read")]
        # The scope is the resource the collection or action is under (for a top-level
        # collection, the scope the provider segment is under: the resource group).
        scope_parts = base + rest[:-1] if len(rest) > 1 else base[:-2]
    else:
        verb = "action" if method == "POST" else _VERB.get(method, "read")
        types += [_spelled(t) for t in pairs] + [verb]
        scope_parts = base + rest
    return RequestAction("/".join(types), "/" + "/".join(scope_parts) if scope_parts else "/")


# Requests local ACI lets every signed-in caller make: polling the result of an operation the
# caller started (ARM's location operation results: the operation id in the URL is what it hands
# out) and reading role definitions (a local choice: arm/deploy.py reads the template's custom
# role at the subscription as a deployer who may hold Owner on the resource group only).
UNCHECKED_ACTIONS = frozenset(
    a.lower()
    for a in (
        "Microsoft.Resources/locations/operationResults/read",
        # A resource group deletion's result, at the subscription (ResourceGroups_Delete's
        # Location): the same, for a caller who may hold rights on the group only.
        "Microsoft.Resources/subscriptions/operationResults/read",
        # A container group DELETE's async operation (its status, its result): the same, for
        # Container Instances (prefect-azure's worker polls it with the worker role).
        "Microsoft.ContainerInstance/locations/operations/read",
        "Microsoft.ContainerInstance/locations/operationResults/read",
        # A standby pool PUT's or DELETE's Azure-AsyncOperation, at the subscription: the same.
        "Microsoft.StandbyPool/locations/operationStatuses/read",
        "Microsoft.Authorization/roleDefinitions/read",
    )
)


def checked(action: str) -> bool:
    """Whether local ACI checks RBAC for ``action`` (see UNCHECKED_ACTIONS)."""
    return action.lower() not in UNCHECKED_ACTIONS


def action_for(method: str, path: str) -> str:
    """The Azure action a Resource Manager request needs (see `request_action`)."""
    return request_action(method, path).action


def vault_action(method: str, path: str) -> str:
    """The Key Vault data action of a request on a vault's secrets (Microsoft Learn, "Azure
    Key Vault RBAC guide" and the Microsoft.KeyVault operations list): reading a secret's value
    is `getSecret/action`; listing secrets or versions, or reading only attributes, is
    `readMetadata/action`."""
    method = method.upper()
    parts = [p for p in path.split("/") if p]
    if method == "GET":
        if len(parts) >= 2 and parts[0].lower() == "secrets" and parts[-1].lower() != "versions":
            return GET_SECRET
        return READ_SECRET_METADATA
    if method == "DELETE":
        return DELETE_SECRET
    return SET_SECRET


# -- Azure's refusals ----------------------------------------------------------------------------


def authorization_failed(client: str, principal_id: str, action: str, scope: str) -> dict:
    """Resource Manager's 403 body when the caller may not perform the action (as Azure words it,
    e.g. Azure/ARO-RP#66, nccgroup/ScoutSuite#1343)."""
    return {
        "error": {
            "code": "AuthorizationFailed",
            "message": f"The client '{client}' with object id '{principal_id}' does not have "
            f"authorization to perform action '{action}' over scope '{scope}' or the scope is "
            "invalid. If access was recently granted, please refresh your credentials.",
        }
    }


def linked_authorization_failed(
    client: str, principal_id: str, action: str, scope: str, linked: list[tuple[str, str]]
) -> dict:
    """Resource Manager's 403 body when the caller may perform the action but not the linked
    ones it needs (assigning an identity, joining a subnet). Scopes are joined with ',' as in
    Azure/aad-pod-identity#339. Answers captured in 2019-2020 (Azure/aad-pod-identity#613) say
    "action" and have no "(respectively)"; this is the later wording with both, as the project's
    issue 18 quotes it (not confirmed here from a captured answer)."""
    actions = ",".join(a for a, _ in linked)
    scopes = ",".join(s for _, s in linked)
    return {
        "error": {
            "code": "LinkedAuthorizationFailed",
            "message": f"The client '{client}' with object id '{principal_id}' has permission "
            f"to perform action '{action}' on scope '{scope}'; however, it does not have "
            f"permission to perform action(s) '{actions}' on the linked scope(s) '{scopes}' "
            "(respectively) or the linked scope(s) are invalid.",
        }
    }


def vault_forbidden(client: str, principal_id: str, action: str, vault_name: str) -> dict:
    """Key Vault's 403 body for an RBAC vault when the caller lacks the data action."""
    return {
        "error": {
            "code": "Forbidden",
            "message": "Caller is not authorized to perform action on resource. "
            f"Caller: appid={client};oid={principal_id}. Action: '{action}'. "
            f"Vault: {vault_name}.",
            "innererror": {"code": "ForbiddenByRbac"},
        }
    }


def inaccessible_image(image: str, group: str) -> tuple[str, str]:
    """ACI's refusal of an image it cannot pull (code and message as Azure answers them, e.g.
    Azure/azure-cli#18596, Azure/docker-login#65: 'BadRequest':'InaccessibleImage')."""
    return (
        "InaccessibleImage",
        f"The image '{image}' in container group '{group}' is not accessible. Please check the "
        "image and registry credential.",
    )


# -- a container group's linked checks -----------------------------------------------------------


def group_linked_scopes(spec: dict) -> list[tuple[str, str]]:
    """The linked (action, scope) pairs a container group write needs: assigning each
    user-assigned identity, joining each subnet, reading the container group profile it is
    made from."""
    identity = spec.get("identity")
    identities = identity.get("userAssignedIdentities") if isinstance(identity, dict) else None
    properties = spec.get("properties")
    subnets = properties.get("subnetIds") if isinstance(properties, dict) else None
    # A part a deployment has not evaluated yet (an expression string) is checked when it is.
    identities = identities if isinstance(identities, dict) else {}
    subnets = subnets if isinstance(subnets, list) else []
    profile = properties.get("containerGroupProfile") if isinstance(properties, dict) else None
    profile_id = profile.get("id") if isinstance(profile, dict) else None
    return (
        [(ASSIGN_IDENTITY, i) for i in identities]
        + [(JOIN_SUBNET, s["id"]) for s in subnets if isinstance(s, dict) and s.get("id")]
        + ([(READ_PROFILE, profile_id)] if isinstance(profile_id, str) and profile_id else [])
    )


def registry_id(resource_group_id: str, server: str) -> str:
    """The resource id of the registry behind `<name>.azurecr.io` (in the group)."""
    name = server.split(".", 1)[0]
    return f"{resource_group_id}/providers/Microsoft.ContainerRegistry/registries/{name}"


def image_pulls_refused(
    authorization: Authorization,
    group_name: str,
    spec: dict,
    resource_group_id: str,
    principal_of: Callable[[str], str | None],
) -> tuple[str, str] | None:
    """ACI's InaccessibleImage for the first image pulled with an identity (an
    `imageRegistryCredentials[]` entry with `identity`) that may not pull from the registry
    (`Microsoft.ContainerRegistry/registries/pull/read`, AcrPull's action). ``principal_of``
    gives an identity's principal id from its resource id."""
    properties = spec.get("properties")
    credentials = properties.get("imageRegistryCredentials") if isinstance(properties, dict) else []
    for credential in credentials if isinstance(credentials, list) else []:
        if not isinstance(credential, dict):
            continue
        identity, server = credential.get("identity"), str(credential.get("server") or "").lower()
        if not identity or not server:
            continue
        principal = principal_of(identity)
        allowed = principal is not None and authorization.allowed(
            principal, ACR_PULL_ACTION, registry_id(resource_group_id, server)
        )
        if allowed:
            continue
        for container in properties.get("containers") or []:
            image = str(((container or {}).get("properties") or {}).get("image", ""))
            if image.lower().startswith(f"{server}/"):
                return inaccessible_image(image, group_name)
    return None


def group_write_refusal(
    authorization: Authorization,
    client: str,
    principal_id: str,
    group_id: str,
    spec: dict,
    resource_group_id: str,
    principal_of: Callable[[str], str | None],
) -> tuple[int, dict] | None:
    """Azure's refusal of a container group write beyond the write itself, as (status, body):
    linked authorization first (403 LinkedAuthorizationFailed: assigning each user-assigned
    identity, joining each subnet), then the images pulled with an identity that may not pull
    (400 InaccessibleImage). One implementation for a direct PUT and, later, for the groups a
    deployment creates as its caller."""
    missing = authorization.missing(principal_id, group_linked_scopes(spec))
    if missing:
        write = "Microsoft.ContainerInstance/containerGroups/write"
        return 403, linked_authorization_failed(client, principal_id, write, group_id, missing)
    name = group_id.rstrip("/").rsplit("/", 1)[-1]
    refused = image_pulls_refused(authorization, name, spec, resource_group_id, principal_of)
    if refused:
        code, message = refused
        return 400, {"error": {"code": code, "message": message}}
    return None
