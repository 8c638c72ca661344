"""The local ACI's endpoints, each speaking its Azure REST protocol, on FastAPI:

- https://management.azure.com: Resource Manager (deployments, resource groups, what the
  templates recorded, role assignments), Container Instances groups (stop, start, logs).
- https://<vault>.vault.azure.net: each deployed vault's secrets behind the 401 bearer challenge.
- https://<registry>.azurecr.io: each deployed registry's data plane
  (prefect_aci.local_aci.registry).
- http://169.254.169.254: the instance metadata service's managed identity tokens (IMDS), served
  on port 80 and reached through the IMDS router (prefect_aci.local_aci.imds_router).
- /_local/... on the HTTPS port (which the stack publishes on 127.0.0.1 only): the stack's own
  door: an App Service-style identity endpoint (the deployer by default, or an identity the local
  Azure knows, named as App Service names one), run-time settings and fault injection for tests,
  all behind the deployer's secret, and health.

Resource Manager paths are matched without regard to case, as Azure does (azure-mgmt-resource
sends `resourcegroups`, azure-mgmt-containerinstance `resourceGroups`). Malformed requests get
Azure's error shapes and status codes, never a traceback page.
"""

import json
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from prefect_aci.local_aci import subscriptions
from prefect_aci.local_aci.authorization import (
    RequestAction,
    assignment_scope,
    authorization_failed,
    builtin_roles,
    checked,
    covers,
    definition_id,
    group_write_refusal,
    request_action,
    vault_action,
    vault_forbidden,
)
from prefect_aci.local_aci.config import LocalAzure
from prefect_aci.local_aci.directory import Directory
from prefect_aci.local_aci.groups import Group, GroupError, Groups
from prefect_aci.local_aci.imds_router import ADDRESS as IMDS_ADDRESS
from prefect_aci.local_aci.imds_router import CALLER_HEADER, ROUTER_SECRET_HEADER
from prefect_aci.local_aci.paging import Pager
from prefect_aci.local_aci.registry import ContainerRegistries
from prefect_aci.local_aci.resource_manager import ArmError, Deployment, Planned, ResourceManager
from prefect_aci.local_aci.resources import (
    CONTAINER_GROUP_PROFILES,
    PROFILE_REVISIONS,
    ROLE_ASSIGNMENTS,
    ROLE_DEFINITIONS,
    STANDBY_POOLS,
    Context,
    ResourceStore,
    not_found,
    resource_request,
    split_path,
)
from prefect_aci.local_aci.schema import CONTAINER_GROUPS
from prefect_aci.local_aci.standby import (
    PROVIDER_APP_ID,
    PoolOperation,
    StandbyPools,
    api_has_standby,
    claim_problem,
    is_claim,
)
from prefect_aci.local_aci.tokens import TokenIssuer

# The lists the Authorization provider answers itself, at any scope.
AUTHORIZATION_LISTS = (ROLE_DEFINITIONS.lower(), ROLE_ASSIGNMENTS.lower())
MANAGEMENT = "https://management.azure.com"
MANAGEMENT_AUDIENCES = [MANAGEMENT, *subscriptions.AUDIENCES]
VAULT_AUDIENCE = "https://vault.azure.net"
GRAPH = "https://graph.microsoft.com"
GRAPH_HOST = "graph.microsoft.com"
SUBSCRIPTION = r"/subscriptions/(?P<sub>[^/]+)/resourcegroups/(?P<rg>[^/]+)/providers"
ROUTES = [
    ("deployment", rf"^{SUBSCRIPTION}/microsoft\.resources/deployments/(?P<name>[^/]+)$"),
    (
        "operation",
        rf"^{SUBSCRIPTION}/microsoft\.resources/deployments/(?P<name>[^/]+)"
        r"/operationstatuses/(?P<op>[^/]+)$",
    ),
    ("deployments", rf"^{SUBSCRIPTION}/microsoft\.resources/deployments/?$"),
    ("group", rf"^{SUBSCRIPTION}/microsoft\.containerinstance/containergroups/(?P<name>[^/]+)$"),
    (
        "group_action",
        rf"^{SUBSCRIPTION}/microsoft\.containerinstance/containergroups/(?P<name>[^/]+)"
        r"/(?P<action>stop|start|restart)$",
    ),
    (
        "logs",
        rf"^{SUBSCRIPTION}/microsoft\.containerinstance/containergroups/(?P<name>[^/]+)"
        r"/containers/(?P<container>[^/]+)/logs$",
    ),
    ("groups", rf"^{SUBSCRIPTION}/microsoft\.containerinstance/containergroups/?$"),
    # Container group profiles and their revisions; standby pools and their runtime views
    # (prefect_aci.local_aci.standby).
    ("profile", rf"^{SUBSCRIPTION}/microsoft\.containerinstance/containergroupprofiles(?:/.*)?$"),
    ("pool", rf"^{SUBSCRIPTION}/microsoft\.standbypool/standbycontainergrouppools(?:/.*)?$"),
    # A standby pool PUT's or DELETE's Azure-AsyncOperation.
    (
        "pool_operation",
        r"^/subscriptions/(?P<sub>[^/]+)/providers/microsoft\.standbypool/locations/"
        r"(?P<location>[^/]+)/operationstatuses/(?P<op>[^/]+)$",
    ),
    # A container group DELETE's async operation (Azure-AsyncOperation: .../operations/<id>;
    # Location: .../operationResults/<id>), as in the REST spec's ContainerGroups_Delete example.
    (
        "group_operation",
        rf"^{SUBSCRIPTION}/microsoft\.containerinstance/locations/(?P<location>[^/]+)"
        r"/(?P<kind>operations|operationresults)/(?P<op>[^/]+)$",
    ),
    # What-if (long-running: 202 + Location, answered at ARM's location operation results).
    ("what_if", rf"^{SUBSCRIPTION}/microsoft\.resources/deployments/(?P<name>[^/]+)/whatif$"),
    (
        "what_if_result",
        r"^/subscriptions/(?P<sub>[^/]+)/providers/microsoft\.resources/locations/[^/]+"
        r"/operationresults/(?P<op>[^/]+)$",
    ),
    # Role definitions live at the subscription; everything else the template made at its id in
    # the group (child types and extension resources such as role assignments on a vault
    # included). GET of one, or the list of a type.
    (
        "resource",
        r"^/subscriptions/(?P<sub>[^/]+)/providers/microsoft\.authorization/roledefinitions"
        r"(?:/[^/]+)?/?$",
    ),
    # A type listed across the subscription (az container list without a group): authorised at
    # the subscription, as Azure does, so a caller with roles on the resource group only gets
    # 403 AuthorizationFailed there.
    (
        "subscription_list",
        r"^/subscriptions/(?P<sub>[^/]+)/providers/(?P<namespace>[^/]+)/(?P<type>[^/]+)/?$",
    ),
    ("resource", rf"^{SUBSCRIPTION}/[^/]+/.+$"),
    ("resource_group", r"^/subscriptions/(?P<sub>[^/]+)/resourcegroups/(?P<rg>[^/]+)/?$"),
    # A resource group DELETE's operation (its Location, at the subscription).
    ("resource_group_operation", r"^/subscriptions/(?P<sub>[^/]+)/operationresults/(?P<op>[^/]+)$"),
]

# What Resource Manager answers above a resource group (prefect_aci.local_aci.subscriptions).
ABOVE_GROUPS = [
    ("metadata", r"^/+metadata/endpoints/?$"),
    ("tenants", r"^/tenants/?$"),
    ("subscriptions", r"^/subscriptions/?$"),
    ("subscription", r"^/subscriptions/(?P<sub>[^/]+)/?$"),
    ("providers", r"^/subscriptions/(?P<sub>[^/]+)/providers/?$"),
    ("provider", r"^/subscriptions/(?P<sub>[^/]+)/providers/(?P<namespace>[^/]+)/?$"),
    ("resource_groups", r"^/subscriptions/(?P<sub>[^/]+)/resourcegroups/?$"),
    ("resources", r"^/subscriptions/(?P<sub>[^/]+)(?:/resourcegroups/(?P<rg>[^/]+))?/resources/?$"),
]


def not_served(method: str, path: str) -> JSONResponse:
    """ARM's error shape for a request local Azure does not serve, saying so."""
    return _error(
        404,
        "InvalidResourceType",
        f"{method} {path} is not served by local Azure (prefect-aci's stand-in for the Azure "
        "endpoints on its path; docs/local-aci.md lists what it serves).",
    )


def _origin(request: Request) -> str:
    """Where the caller reached Resource Manager (management.azure.com from a container, the
    stack's door on 127.0.0.1 from this machine): operation URLs point back there, as Azure's
    do at the host they were asked on."""
    return str(request.base_url).rstrip("/")


def _identity_error(status: int, description: str) -> JSONResponse:
    """The error shape of IMDS and the App Service identity endpoint (OAuth's, not ARM's)."""
    return JSONResponse({"error": "invalid_request", "error_description": description}, status)


def _invalid_content(problem) -> JSONResponse:
    """ARM's 400 for a body its schema refuses, naming the first problem."""
    return _error(
        400,
        "InvalidRequestContent",
        "The request content was invalid and could not be deserialized: "
        f"'{problem.message}. Path '{problem.path}''.",
    )


def _error(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


# The query parameters of IMDS's token endpoint (Microsoft Learn, "How to use managed identities
# for Azure resources on an Azure VM to acquire an access token": api-version, resource, and one of
# object_id, client_id, msi_res_id; mi_res_id is the newer spelling of msi_res_id that MSAL
# sends). App Service's principal_id is not IMDS's.
IMDS_PARAMETERS = frozenset(
    {"api-version", "resource", "client_id", "object_id", "msi_res_id", "mi_res_id"}
)
# The newest versions IMDS lists when none is given (the page's example; any version is taken).
IMDS_NEWEST_VERSIONS = ("2020-10-01", "2020-09-01", "2020-07-15")


def imds_request_error(headers, query) -> JSONResponse | None:
    """IMDS's refusals of a token request before it looks for an identity: the Metadata header
    (its documented error bad_request_102), the api-version and the resource it requires, and
    only its own parameters."""
    if headers.get("metadata", "").lower() != "true":
        return JSONResponse(
            {
                "error": "bad_request_102",
                "error_description": "Required metadata header not specified",
            },
            400,
        )
    if not query.get("api-version"):
        # Microsoft Learn, "Azure Instance Metadata Service", Versioning: "When you don't specify
        # a version, you get an error with a list of the newest supported versions".
        return JSONResponse(
            {
                "error": "Bad request. api-version was not specified in the request. For more "
                "information refer to aka.ms/azureimds",
                "newest-versions": list(IMDS_NEWEST_VERSIONS),
            },
            400,
        )
    if not query.get("resource"):
        return _identity_error(400, "Required audience parameter not specified")
    unknown = sorted(set(query) - IMDS_PARAMETERS)
    if unknown:
        return _identity_error(
            400,
            f"Query parameter(s) {', '.join(unknown)} are not IMDS's (it takes: "
            f"{', '.join(sorted(IMDS_PARAMETERS))})",
        )
    return None


# What a test may change at run time through /_local/settings (LocalAzure's fields).
SETTINGS = (
    "container_group_delete_seconds",
    "standard_cores_quota",
    "role_assignment_delay_seconds",
)


@dataclass
class Fault:
    """Azure's error for the next ``times`` requests of ``method`` whose path contains
    ``path_contains``: ``status`` with ``code``, ``message`` and ``details`` (ARM's error shape).
    ``in_operation``: the request is accepted (202) and its long-running operation ends with the
    error, as a resource group deletion that Azure blocks does; only a resource group DELETE
    takes such a fault."""

    method: str
    path_contains: str
    status: int
    times: int
    code: str = "ServiceUnavailable"
    message: str = "Injected by a test."
    details: list = field(default_factory=list)
    in_operation: bool = False
    # Seconds in a Retry-After header, as ARM sends with 429 (throttling) and some 503s.
    retry_after: int | None = None

    def body(self) -> dict:
        error: dict = {"code": self.code, "message": self.message}
        if self.details:
            error["details"] = self.details
        return {"error": error}

    def response(self) -> JSONResponse:
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else None
        return JSONResponse(self.body(), self.status, headers=headers)


@dataclass
class GroupDeletion:
    """A resource group DELETE as ARM runs it (ResourceGroups_Delete: 202 with a Location to
    poll): done once the container groups it deletes are gone, or failed with ``error``."""

    id: str
    groups: list[str] = field(default_factory=list)  # the container groups it deletes
    error: Fault | None = None
    done: bool = False


def _secret_item(secret) -> dict:
    """A Key Vault secret's attributes and tags as GetSecret and GetSecrets answer them."""
    attributes = secret.properties.get("attributes") or {}
    return {
        "attributes": {
            "enabled": attributes.get("enabled", True),
            "created": attributes.get("created"),
            "updated": attributes.get("updated"),
            "recoveryLevel": "Recoverable",
        },
        "tags": secret.body.get("tags") or {},
    }


class LocalAci:
    def __init__(
        self,
        config: LocalAzure,
        groups: Groups,
        arm: ResourceManager,
        issuer: TokenIssuer,
        deployer_secret: str,
        standby: StandbyPools | None = None,
    ) -> None:
        self.config = config
        self.groups = groups
        self.arm = arm
        # The standby pools' controller (started by its owner: without it pools stay empty and
        # every claim falls back to a create).
        store = arm.store if arm is not None else ResourceStore()
        self.standby = standby or StandbyPools(config, groups, store)
        if arm is not None:
            arm.standby = self.standby
        self.pool_operations: dict[str, PoolOperation] = {}
        # The deployed resources as the providers see them (identities, roles, vaults).
        self.directory = Directory(config, arm.store if arm is not None else ResourceStore())
        self.issuer = issuer
        self.deployer_secret = deployer_secret
        self.faults: list[Fault] = []
        self.lock = threading.Lock()
        # The one resource group's GET body (None while it does not exist) and its deletions.
        exists = config is not None and config.resource_group_exists
        self.group: dict | None = self._group_body_at(config.location, None) if exists else None
        self.group_deletions: dict[str, GroupDeletion] = {}

    # -- faults (tests) -------------------------------------------------------------------------

    def _fault(self, method: str, path: str, in_operation: bool = False) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if (
                    fault.method == method
                    and fault.path_contains.lower() in path.lower()
                    and fault.in_operation == in_operation
                ):
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    # -- authentication ---------------------------------------------------------------------------

    def _caller(self, request: Request, audience: str) -> dict | None:
        """The claims of the caller's bearer token for ``audience``; Resource Manager takes a
        token for either of its audiences (subscriptions.AUDIENCES), as Azure's does."""
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("bearer "):
            return None
        audiences = MANAGEMENT_AUDIENCES if audience == MANAGEMENT else [audience]
        for each in audiences:
            claims = self.issuer.verify(header[7:], each)
            if claims is not None:
                return claims
        return None

    def _arm_caller(self, request: Request, needed: RequestAction) -> JSONResponse | None:
        """The caller's token, then Azure RBAC: the request's action on its resource's scope."""
        claims = self._caller(request, MANAGEMENT)
        if claims is None:
            return self._invalid_token()
        if checked(needed.action) and not self.directory.authorization().allowed(
            claims["oid"], needed.action, needed.scope
        ):
            return JSONResponse(
                authorization_failed(
                    str(claims.get("appid")), claims["oid"], needed.action, needed.scope
                ),
                403,
            )
        return None

    def _invalid_token(self) -> JSONResponse:
        challenge = (
            f'Bearer authorization_uri="https://login.windows.net/{self.config.tenant_id}", '
            'error="invalid_token", error_description="The access token is missing or invalid."'
        )
        return _error(
            401,
            "InvalidAuthenticationToken",
            "The access token is invalid or missing.",
            {"WWW-Authenticate": challenge},
        )

    def _group_write_refused(
        self, request: Request, needed: RequestAction, payload
    ) -> JSONResponse | None:
        """What Azure checks beyond the write of a container group: linked authorization (assign
        each user-assigned identity, join each subnet: 403 LinkedAuthorizationFailed), then the
        images pulled with an identity, which needs AcrPull on the registry (400
        InaccessibleImage, as ACI answers)."""
        claims = self._caller(request, MANAGEMENT) or {}

        refused = group_write_refusal(
            self.directory.authorization(),
            str(claims.get("appid")),
            claims.get("oid", ""),
            needed.scope,
            payload if isinstance(payload, dict) else {},
            self.config.resource_group_id,
            self.directory.principal_of,
        )
        return JSONResponse(refused[1], refused[0]) if refused else None

    def _deploy_authorizer(self, claims: dict):
        """Azure's checks of a template deployment's resources for the deploying caller: the
        write of each resource, and for a container group what a direct PUT needs beyond it
        (one implementation for both: authorization.group_write_refusal)."""
        client, principal = str(claims.get("appid")), claims.get("oid", "")

        def authorize(item: Planned, resource: dict) -> None:
            authorization = self.directory.authorization()
            write = f"{item.type}/write"
            # A custom role is written on each scope it may be assigned at (Microsoft Learn:
            # "roleDefinitions/write permission on all AssignableScopes"), not where it lives.
            scopes = [item.azure_id]
            if item.type.lower() == ROLE_DEFINITIONS.lower():
                scopes = (resource.get("properties") or {}).get("assignableScopes") or scopes
            denied = [s for s in scopes if not authorization.allowed(principal, write, str(s))]
            if checked(write) and denied:
                refused = (403, authorization_failed(client, principal, write, str(denied[0])))
            elif item.type.lower() == CONTAINER_GROUPS.lower():
                refused = group_write_refusal(
                    authorization,
                    client,
                    principal,
                    item.azure_id,
                    resource,
                    self.config.resource_group_id,
                    self.directory.principal_of,
                )
            else:
                refused = None
            if refused is not None:
                status, body = refused
                raise ArmError(status, body["error"]["code"], body["error"]["message"])

        return authorize

    # -- Resource Manager and Container Instances ---------------------------------------------

    def management(self, request: Request, path: str, body: bytes) -> Response:
        above = next(
            ((r, m) for r, p in ABOVE_GROUPS if (m := re.match(p, path, re.IGNORECASE))), None
        )
        if above is not None:
            return self._above_groups(request, *above)
        found = next(((r, m) for r, p in ROUTES if (m := re.match(p, path, re.IGNORECASE))), None)
        if found is None:
            return not_served(request.method, path)
        route, match = found
        params = match.groupdict()
        if params["sub"].lower() != self.config.subscription_id.lower():
            return _error(
                404,
                "SubscriptionNotFound",
                f"The subscription '{params['sub']}' could not be found.",
            )
        group = params.get("rg")  # None for what lives at the subscription (role definitions)
        if group is not None and (
            group.lower() != self.config.resource_group.lower()
            or (route != "resource_group" and self._group_state() is None)
        ):
            return _error(
                404, "ResourceGroupNotFound", f"Resource group '{params['rg']}' could not be found."
            )
        if not request.query_params.get("api-version"):
            return _error(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        needed = request_action(request.method, path)
        for scoped in self._role_deletion_scopes(needed) or [needed]:
            denied = self._arm_caller(request, scoped)
            if denied is not None:
                return denied
        injected = self._fault(request.method, path)
        if injected is not None:
            return injected.response()
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            return _error(400, "InvalidRequestContent", "The request content was not valid JSON.")
        if route == "group" and request.method == "PUT":
            refused = self._group_write_refused(request, needed, payload)
            if refused is not None:
                return refused
        handler = getattr(self, f"_{route}")
        try:
            return handler(request, params, payload)
        except ArmError as exc:
            return JSONResponse(exc.body(), exc.status)

    def _above_groups(self, request: Request, route: str, match: re.Match) -> Response:
        """The cloud's metadata (no sign-in, as Azure's), then, for a signed-in caller, the
        tenant, the subscription when the caller holds a role in it (Azure lists only those),
        its providers and its resource group."""
        if request.method != "GET":
            return not_served(request.method, request.url.path)
        if not request.query_params.get("api-version"):
            return _error(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        if route == "metadata":
            return JSONResponse(subscriptions.cloud_metadata(_origin(request)))
        claims = self._caller(request, MANAGEMENT)
        if claims is None:
            return self._invalid_token()
        visible = self._sees_subscription(claims["oid"])
        if route == "tenants":
            return JSONResponse({"value": [subscriptions.tenant(self.config)]})
        if route == "subscriptions":
            found = [subscriptions.subscription(self.config)] if visible else []
            return JSONResponse({"count": {"type": "Total", "value": len(found)}, "value": found})
        sub = match.group("sub")
        if sub.lower() != self.config.subscription_id.lower() or not visible:
            return _error(
                404, "SubscriptionNotFound", f"The subscription '{sub}' could not be found."
            )
        if route == "subscription":
            return JSONResponse(subscriptions.subscription(self.config))
        if route == "providers":
            return JSONResponse({"value": subscriptions.providers(self.config, self.arm.schemas)})
        if route == "provider":
            namespace = match.group("namespace")
            found = subscriptions.provider(self.config, self.arm.schemas, namespace)
            if found is None:
                return _error(
                    404,
                    "InvalidResourceNamespace",
                    f"The resource namespace '{namespace}' is invalid.",
                )
            return JSONResponse(found)
        if route == "resources":
            return self._resources(request, match.group("rg"), claims["oid"])
        # ResourceGroups_List: the group, if the caller may read it (Azure filters this list).
        readable = self.directory.authorization().allowed(
            claims["oid"],
            "Microsoft.Resources/subscriptions/resourceGroups/read",
            self.config.resource_group_id,
        )
        exists = self._group_state() is not None and self.group
        return JSONResponse({"value": [self.group] if exists and readable else []})

    def _resources(self, request: Request, group: str | None, principal: str) -> Response:
        """Resources_List and Resources_ListByResourceGroup (az resource list, and az acr's
        lookup of a registry by name): every resource in the subscription or the group, in the
        generic shape, only those the caller may read (Azure filters this list by the caller's
        rights), `$filter=resourceType eq '...'` and/or `resourceGroup eq '...'`."""
        wanted = request.query_params.get("$filter", "").strip()
        clauses = {}
        for clause in re.split(r"\s+and\s+", wanted) if wanted else []:
            found = re.fullmatch(r"(resourceType|resourceGroup) eq '([^']+)'", clause.strip())
            if found is None:
                return not_served(request.method, f"{request.url.path}?$filter={wanted}")
            clauses[found.group(1)] = found.group(2).lower()
        group = group or clauses.get("resourceGroup")
        if group is not None and (
            group.lower() != self.config.resource_group.lower() or self._group_state() is None
        ):
            return _error(
                404, "ResourceGroupNotFound", f"Resource group '{group}' could not be found."
            )
        bodies = [r.body for r in self.arm.store.under(self.config.resource_group_id)]
        bodies += [self._group_body(g) for g in self.groups.all_in(self.config.resource_group)]
        authorization = self.directory.authorization()
        entries = []
        for body in bodies:
            if (
                str(body["type"]).count("/") != 1
                or str(body["id"]).count("/providers/") != 1
                or body["type"].lower().startswith("microsoft.authorization/")
            ):
                continue  # a child, an extension or an authorization resource: not listed
            if clauses.get("resourceType", body["type"].lower()) != body["type"].lower():
                continue
            if not authorization.allowed(principal, f"{body['type']}/read", body["id"]):
                continue
            generic = {k: body[k] for k in ("id", "name", "type", "location") if k in body}
            for key in ("kind", "sku", "identity", "tags", "managedBy"):
                if body.get(key) is not None:
                    generic[key] = body[key]
            entries.append((body["id"].lower(), generic))
        return JSONResponse(self._pager(request).page(entries))

    def _sees_subscription(self, principal_id: str) -> bool:
        """Whether a caller sees the subscription: Azure lists the subscriptions where the caller
        holds a role, at the subscription or anything in it."""
        inside = f"/subscriptions/{self.config.subscription_id}"
        authorization = self.directory.authorization()
        return any(
            covers(inside, assignment_scope(a)) for a in authorization.assignments_of(principal_id)
        )

    def _operation_url(self, request: Request, deployment: Deployment) -> str:
        query = urlencode({"api-version": request.query_params["api-version"]})
        return (
            f"{_origin(request)}/subscriptions/{self.config.subscription_id}/resourcegroups/"
            f"{deployment.resource_group}/providers/Microsoft.Resources/deployments/"
            f"{deployment.name}/operationStatuses/{deployment.operation}?{query}"
        )

    def _deployment(self, request: Request, params: dict, payload) -> Response:
        rg, name = self.config.resource_group, params["name"]
        if request.method == "PUT":
            claims = self._caller(request, MANAGEMENT) or {}
            deployment = self.arm.create(
                rg,
                name,
                payload,
                self.config.location,
                caller=claims.get("oid", ""),
                authorize=self._deploy_authorizer(claims),
            )
            headers = {
                "Azure-AsyncOperation": self._operation_url(request, deployment),
                "Retry-After": "1",
            }
            return JSONResponse(self.arm.body(deployment), 201, headers=headers)
        deployment = self.arm.get(rg, name)
        if deployment is None:
            return _error(404, "DeploymentNotFound", f"Deployment '{name}' could not be found.")
        if request.method == "GET":
            return JSONResponse(self.arm.body(deployment))
        if request.method == "DELETE":
            self.arm.delete(deployment)
            return Response(status_code=204)
        return _error(405, "MethodNotAllowed", f"{request.method} is not supported here.")

    def _operation(self, request: Request, params: dict, payload) -> Response:
        deployment = self.arm.get(self.config.resource_group, params["name"])
        if deployment is None or deployment.operation != params["op"].upper():
            return _error(404, "OperationNotFound", "The operation could not be found.")
        headers = {"Retry-After": "1"} if deployment.state == "Running" else {}
        return JSONResponse(self.arm.operation(deployment), headers=headers)

    def _pager(self, request: Request) -> Pager:
        """The pages of a list request: at the host the client asked, as the group operation's
        URLs are (Azure's nextLink is absolute)."""
        return Pager(
            f"{_origin(request)}{request.url.path}",
            dict(request.query_params),
            self.config.list_page_size,
        )

    def _deployments(self, request: Request, params: dict, payload) -> Response:
        deployments = self.arm.all_in(self.config.resource_group)
        return JSONResponse(
            self._pager(request).page((d.name.lower(), self.arm.body(d)) for d in deployments)
        )

    def _what_if(self, request: Request, params: dict, payload) -> Response:
        if request.method != "POST":
            return _error(405, "MethodNotAllowed", "Use POST.")
        found = self.arm.what_if(
            self.config.resource_group, params["name"], payload, self.config.location
        )
        query = urlencode({"api-version": request.query_params["api-version"]})
        location = (
            f"{_origin(request)}/subscriptions/{self.config.subscription_id}/providers/"
            f"Microsoft.Resources/locations/{self.config.location}/operationResults/{found.id}"
            f"?{query}"
        )
        return Response(status_code=202, headers={"Location": location, "Retry-After": "1"})

    def _what_if_result(self, request: Request, params: dict, payload) -> Response:
        found = self.arm.what_if_result(params["op"])
        if found is None:
            return _error(404, "OperationNotFound", "The operation could not be found.")
        return JSONResponse(found.result)

    def _group_body_at(self, location: str, tags: dict | None) -> dict:
        body = {
            "id": self.config.resource_group_id,
            "name": self.config.resource_group,
            "type": "Microsoft.Resources/resourceGroups",
            "location": location,
            "properties": {"provisioningState": "Succeeded"},
        }
        return {**body, "tags": tags} if tags else body

    def _group_state(self) -> str | None:
        """The resource group's provisioning state (Succeeded, Deleting), None when there is
        none; a deletion whose container groups are all gone ends here."""
        with self.lock:
            for deletion in self.group_deletions.values():
                if deletion.done or deletion.error is not None:
                    continue
                rg = self.config.resource_group
                if all(self.groups.get(rg, name) is None for name in deletion.groups):
                    deletion.done = True
                    self.group = None
            return self.group["properties"]["provisioningState"] if self.group else None

    def _resource_group(self, request: Request, params: dict, payload) -> Response:
        """The one resource group local Azure holds (azure-rest-api-specs, Microsoft.Resources
        resources.json: ResourceGroups_CheckExistence, _Get, _CreateOrUpdate, _Delete). A PUT
        creates it in the location it gives when there is none (201; a PUT of an existing group
        changes nothing, 200); what a deployment makes stays in LocalAzure.location."""
        state = self._group_state()
        name = self.config.resource_group
        if request.method == "PUT":
            if state == "Deleting":
                return _error(
                    409,
                    "ResourceGroupBeingDeleted",
                    f"The resource group '{name}' is in deprovisioning state and cannot perform "
                    "this operation.",
                )
            if state is not None:
                return JSONResponse(self.group)
            location = payload.get("location") if isinstance(payload, dict) else None
            if not isinstance(location, str) or not location:
                return _error(
                    400,
                    "LocationRequired",
                    "The location property is required for this definition.",
                )
            tags = payload.get("tags") if isinstance(payload.get("tags"), dict) else None
            with self.lock:
                self.group = self._group_body_at(location, tags)
            return JSONResponse(self.group, 201)
        if state is None:
            if request.method == "HEAD":
                return Response(status_code=404)
            if request.method in ("GET", "DELETE"):
                return _error(
                    404, "ResourceGroupNotFound", f"Resource group '{name}' could not be found."
                )
        if request.method == "HEAD":
            return Response(status_code=204)
        if request.method == "GET":
            return JSONResponse(self.group)
        if request.method == "DELETE":
            return self._delete_resource_group(request)
        return _error(
            405, "MethodNotAllowed", f"{request.method} of the resource group is not supported."
        )

    def _delete_resource_group(self, request: Request) -> Response:
        """Accept the deletion (202, Location to poll): every recorded resource and deployment in
        the group goes at once, its container groups as ACI deletes them; the group is gone when
        they are. Role definitions live at the subscription and stay, as in Azure. A fault
        ``in_operation`` fails the operation instead, leaving everything in place."""
        fault = self._fault("DELETE", request.url.path, in_operation=True)
        deletion = GroupDeletion(uuid.uuid4().hex.upper(), error=fault)
        if fault is None:
            rg = self.config.resource_group
            for recorded in self.arm.store.under(self.config.resource_group_id):
                self.arm.store.remove(recorded.id)
            for deployment in self.arm.all_in(rg):
                self.arm.delete(deployment)
            for group in self.groups.all_in(rg):
                self.groups.begin_delete(group, self.config.container_group_delete_seconds)
                deletion.groups.append(group.name)
            with self.lock:
                self.group["properties"]["provisioningState"] = "Deleting"
        with self.lock:
            self.group_deletions[deletion.id] = deletion
        return Response(status_code=202, headers=self._group_deletion_headers(request, deletion))

    def _group_deletion_headers(self, request: Request, deletion: GroupDeletion) -> dict:
        query = urlencode({"api-version": request.query_params["api-version"]})
        location = (
            f"{_origin(request)}/subscriptions/{self.config.subscription_id}/operationresults/"
            f"{deletion.id}?{query}"
        )
        return {"Location": location, "Retry-After": "1"}

    def _resource_group_operation(self, request: Request, params: dict, payload) -> Response:
        """A resource group deletion's Location: 202 while it runs, 200 once the group is gone,
        its error when it failed."""
        if request.method != "GET":
            return _error(405, "MethodNotAllowed", "Use GET.")
        self._group_state()
        deletion = self.group_deletions.get(params["op"].upper())
        if deletion is None:
            return _error(404, "OperationNotFound", "The operation could not be found.")
        if deletion.error is not None:
            return JSONResponse(deletion.error.body(), deletion.error.status)
        if not deletion.done:
            return Response(
                status_code=202, headers=self._group_deletion_headers(request, deletion)
            )
        return Response(status_code=200)

    def _subscription_list(self, request: Request, params: dict, payload) -> Response:
        """The resources of one type in the subscription (the one resource group's)."""
        if f"{params['namespace']}/{params['type']}".lower() == CONTAINER_GROUPS.lower():
            return self._groups(request, params, payload)
        return self._resource(request, params, payload)

    def _role_deletion_scopes(self, needed: RequestAction) -> list[RequestAction]:
        """A custom role's deletion is authorised on each of its assignable scopes (Microsoft
        Learn, "Azure custom roles": roleDefinitions/delete on all AssignableScopes), not where
        the role lives; empty for any other request, or a role that is not recorded."""
        if needed.action.lower() != f"{ROLE_DEFINITIONS}/delete".lower():
            return []
        role = self.arm.store.get(needed.scope)
        scopes = (role.properties.get("assignableScopes") or []) if role else []
        return [RequestAction(needed.action, str(scope)) for scope in scopes]

    def _resource(self, request: Request, params: dict, payload) -> Response:
        """A resource a deployment recorded (GET), or those of one type under a parent (list);
        DELETE removes a recorded resource and what is under it (200 with its body, 204 when
        there is none: Azure's answers, as `az role assignment delete` gets them)."""
        if request.method == "DELETE":
            removed = self.arm.store.remove_tree(request.url.path)
            if removed is None:
                return Response(status_code=204)
            return JSONResponse(removed.body)
        split = split_path(request.url.path)
        if request.method == "PUT" and split and split[1].lower() == ROLE_ASSIGNMENTS.lower():
            return self._assign_role(request, split[2], payload)
        if request.method != "GET":
            return _error(
                405,
                "MethodNotAllowed",
                f"{request.method} of this resource type is not supported by the local ACI "
                "(deploy it with a template).",
            )
        if split and split[2] is None and split[1].lower() in AUTHORIZATION_LISTS:
            return self._authorization_list(request, split[0], split[1])
        known = split is not None and (
            self.arm.schemas.versions_of(split[1]) or self.arm.store.by_type(split[1])
        )
        found = (
            resource_request(request.url.path, self.arm.store, self._pager(request))
            if known
            else None
        )
        if found is None:
            return not_served(request.method, request.url.path)
        status, body = found
        return JSONResponse(body, status)

    def _authorization_list(self, request: Request, scope: str, resource_type: str) -> Response:
        """The role definitions or role assignments listed at ``scope``, as the Authorization
        provider lists them (RoleDefinitions_List: the built-in roles and the custom ones
        assignable at, above or below it (below: not confirmed against Azure), `$filter=roleName
        eq '...'`; RoleAssignments_ListForScope: those at,
        above and below the scope, `$filter=atScope()` at and above only,
        `principalId eq '...'` or `assignedTo('...')` one principal's), the stack's own (the
        deployer's Owner) included."""
        wanted = request.query_params.get("$filter", "").strip()
        subscription = f"/subscriptions/{self.config.subscription_id}"
        if resource_type.lower() == ROLE_DEFINITIONS.lower():
            name = re.fullmatch(r"roleName eq '(?P<name>[^']*)'", wanted)
            if wanted and name is None:
                return not_served(request.method, f"{request.url.path}?$filter={wanted}")
            roles = [
                {
                    **{k: v for k, v in role.items() if k not in ("source", "note")},
                    "id": definition_id(self.config.subscription_id, role["name"]),
                }
                for role in builtin_roles()
            ]
            roles += [*self.config.role_definitions]
            roles += [r.body for r in self.arm.store.by_type(ROLE_DEFINITIONS)]
            listed = [
                role
                for role in roles
                if any(
                    covers(str(at), scope) or covers(scope, str(at))
                    for at in (role.get("properties") or {}).get("assignableScopes") or []
                )
                and (name is None or role["properties"].get("roleName") == name["name"])
            ]
        else:
            principal = re.fullmatch(
                r"(?:principalId eq '(?P<a>[^']*)'|assignedTo\('(?P<b>[^']*)'\))", wanted
            )
            if wanted and wanted != "atScope()" and principal is None:
                return not_served(request.method, f"{request.url.path}?$filter={wanted}")
            who = (principal["a"] or principal["b"]).lower() if principal else None
            assignments = [
                *self.config.role_assignments,
                *(r.body for r in self.arm.store.by_type(ROLE_ASSIGNMENTS)),
            ]
            listed = [
                a
                for a in assignments
                if covers(assignment_scope(a), scope)
                or (wanted != "atScope()" and covers(scope, assignment_scope(a)))
            ]
            if who is not None:
                listed = [a for a in listed if a["properties"]["principalId"].lower() == who]
        if not scope.lower().startswith(subscription.lower()):
            listed = []
        entries = [(str(r["id"]).lower(), json.loads(json.dumps(r))) for r in listed]
        return JSONResponse(self._pager(request).page(entries))

    def _assign_role(self, request: Request, name: str | None, payload) -> Response:
        """PUT <scope>/providers/Microsoft.Authorization/roleAssignments/<name>, as `az role
        assignment create` sends it: recorded as a deployment records one, effective at once."""
        properties = (payload or {}).get("properties") if isinstance(payload, dict) else None
        if not name or not isinstance(properties, dict):
            return _error(400, "InvalidRequestContent", "A role assignment needs properties.")
        missing = [k for k in ("roleDefinitionId", "principalId") if not properties.get(k)]
        if missing:
            return _error(
                400,
                "MissingRequiredProperty",
                f"The role assignment request is missing {', '.join(missing)}.",
            )
        path = request.url.path
        scope = path[: path.lower().rfind("/providers/microsoft.authorization/roleassignments")]
        claims = self._caller(request, MANAGEMENT) or {}
        context = Context(
            self.config.subscription_id,
            self.config.resource_group,
            self.config.tenant_id,
            deployment="",
            caller=claims.get("oid", ""),
        )
        resource = {"type": ROLE_ASSIGNMENTS, "name": name, "scope": scope}
        recorded = self.arm.store.record({**resource, "properties": properties}, context)
        return JSONResponse(recorded.body, 201)

    def _group_body(self, group: Group, api_version: str = "") -> dict:
        """A container group's GET body at ``api_version``: config maps, the profile and pool
        references and isCreatedFromStandbyPool only where that api-version has them."""
        spec = json.loads(json.dumps(group.spec))
        properties = spec.setdefault("properties", {})
        if api_has_standby(api_version):
            properties.setdefault("isCreatedFromStandbyPool", False)
        else:
            for key in ("isCreatedFromStandbyPool", "containerGroupProfile", "standbyPoolProfile"):
                properties.pop(key, None)
            for container in properties.get("containers") or []:
                (container.get("properties") or {}).pop("configMap", None)
        states = []
        for container, (_, view) in zip(
            properties.get("containers", []), self.groups.instance_view(group), strict=False
        ):
            container["properties"]["instanceView"] = view
            states.append(view["currentState"])
            for variable in container["properties"].get("environmentVariables") or []:
                if variable.get("secureValue") is None:
                    variable.pop("secureValue", None)
        properties["provisioningState"] = group.provisioning_state
        properties.setdefault("osType", "Linux")
        properties.setdefault("restartPolicy", "Always")
        properties.setdefault("sku", "Standard")
        if group.stopped:
            state = "Stopped"
        elif any(s["state"] == "Running" for s in states):
            state = "Running"
        elif states and all(s["state"] == "Terminated" for s in states):
            state = "Succeeded" if all(s.get("exitCode") == 0 for s in states) else "Failed"
        else:
            state = "Pending"
        properties["instanceView"] = {"state": state, "events": []}
        identity = spec.get("identity") or {}
        for resource_id in list(identity.get("userAssignedIdentities") or {}):
            found = self.directory.identity_by_resource_id(resource_id)
            identity["userAssignedIdentities"][resource_id] = (
                {"principalId": found.principal_id, "clientId": found.client_id} if found else {}
            )
        spec["id"] = (
            f"{self.config.resource_group_id}/providers/Microsoft.ContainerInstance/containerGroups/{group.name}"
        )
        spec.pop("apiVersion", None)
        return spec

    def _missing_group(self, name: str) -> JSONResponse:
        return _error(
            404,
            "ResourceNotFound",
            f"The Resource 'Microsoft.ContainerInstance/containerGroups/{name}' under resource "
            f"group '{self.config.resource_group}' was not found. For more details please go to "
            "https://aka.ms/ARMResourceNotFoundFix",
        )

    def _group(self, request: Request, params: dict, payload) -> Response:
        rg, name = self.config.resource_group, params["name"]
        if request.method == "PUT":
            resource = {
                "type": "Microsoft.ContainerInstance/containerGroups",
                "apiVersion": request.query_params["api-version"],
                "name": name,
                **(payload or {}),
            }
            problems = self.arm.schemas.check(resource)
            if problems:
                return _invalid_content(problems[0])
            api_version = request.query_params["api-version"]
            existed = self.groups.get(rg, name) is not None
            try:
                if is_claim(resource):
                    refused = claim_problem(resource)
                    if refused is not None:
                        return _error(400, "BadRequest", refused)
                    group = self.standby.create_group(rg, resource)
                else:
                    # ACI's own rules (container_rules): the group, the update, the core quota.
                    group = self.groups.create(rg, resource)
            except GroupError as exc:
                return _error(exc.status, exc.code, str(exc))
            # The client polls the group until it is provisioned; say how soon to ask again.
            return JSONResponse(
                self._group_body(group, api_version),
                200 if existed else 201,
                headers={"Retry-After": "1"},
            )
        group = self.groups.get(rg, name)
        if group is None:
            if request.method == "DELETE":
                return Response(status_code=204)
            return self._missing_group(name)
        if request.method == "GET":
            return JSONResponse(self._group_body(group, request.query_params["api-version"]))
        if request.method == "DELETE":
            # Accepted, done later (LocalAzure.container_group_delete_seconds): 202 with the
            # operation to poll, as ACI answers (REST spec, ContainerGroups_Delete: 200, 202
            # with azure-asyncoperation, 204).
            operation = self.groups.begin_delete(group, self.config.container_group_delete_seconds)
            return Response(
                status_code=202, headers=self._group_operation_headers(request, operation.id)
            )
        return _error(405, "MethodNotAllowed", f"{request.method} is not supported here.")

    def _group_operation_headers(self, request: Request, operation: str) -> dict[str, str]:
        query = urlencode({"api-version": request.query_params["api-version"]})
        # At the host the client asked (management.azure.com from a container; the stack's door
        # on 127.0.0.1 from the host), as Azure answers at its own.
        base = (
            f"{_origin(request)}{self.config.resource_group_id}/providers/"
            f"Microsoft.ContainerInstance/locations/{self.config.location}"
        )
        return {
            "Azure-AsyncOperation": f"{base}/operations/{operation}?{query}",
            "Location": f"{base}/operationResults/{operation}?{query}",
            "Retry-After": "1",
        }

    def _group_operation(self, request: Request, params: dict, payload) -> Response:
        """ARM's async operation protocol: the operation's status (InProgress, Succeeded) at
        Azure-AsyncOperation; at Location, 202 while it runs and 204 once the group is gone."""
        operation = self.groups.operation(params["op"])
        if request.method != "GET":
            return _error(405, "MethodNotAllowed", "Use GET.")
        if operation is None:
            return _error(404, "OperationNotFound", "The operation could not be found.")
        running = operation.status == "InProgress"
        headers = {"Retry-After": "1"} if running else {}
        if params["kind"].lower() == "operationresults":
            if running:
                headers.update(self._group_operation_headers(request, operation.id))
                headers.pop("Azure-AsyncOperation")
                return Response(status_code=202, headers=headers)
            return Response(status_code=204)
        resource_id = (
            f"{self.config.resource_group_id}/providers/Microsoft.ContainerInstance/locations/"
            f"{self.config.location}/operations/{operation.id}"
        )
        return JSONResponse(operation.body(resource_id), headers=headers)

    def _group_action(self, request: Request, params: dict, payload) -> Response:
        group = self.groups.get(self.config.resource_group, params["name"])
        if group is None:
            return self._missing_group(params["name"])
        if request.method != "POST":
            return _error(405, "MethodNotAllowed", "Use POST.")
        if params["action"].lower() == "stop":
            self.groups.stop(group)
            return Response(status_code=204)
        if params["action"].lower() == "start":
            self.groups.start(group)
            return Response(status_code=204)
        return _error(
            400, "NotSupported", f"'{params['action']}' is not supported by the local ACI."
        )

    def _logs(self, request: Request, params: dict, payload) -> Response:
        group = self.groups.get(self.config.resource_group, params["name"])
        if group is None:
            return self._missing_group(params["name"])
        tail = request.query_params.get("tail")
        content = self.groups.logs(
            group, params["container"], int(tail) if tail and tail.isdigit() else None
        )
        if content is None:
            return _error(
                404,
                "ContainerNotFound",
                f"Container '{params['container']}' not found in container group '{group.name}'.",
            )
        return JSONResponse({"content": content})

    def _groups(self, request: Request, params: dict, payload) -> Response:
        """The resource group's container groups; standby pool members are the pool's until
        claimed and are not listed (Azure: not documented either way)."""
        groups = self.groups.all_in(self.config.resource_group)
        api_version = request.query_params["api-version"]
        return JSONResponse(
            self._pager(request).page(
                (g.name.lower(), self._group_body(g, api_version)) for g in groups
            )
        )

    # -- container group profiles and standby pools (prefect_aci.local_aci.standby) -----------

    def _context(self, request: Request) -> Context:
        claims = self._caller(request, MANAGEMENT) or {}
        return Context(
            self.config.subscription_id,
            self.config.resource_group,
            self.config.tenant_id,
            deployment="",
            caller=claims.get("oid", ""),
        )

    def _stored(self, request: Request) -> Response:
        found = resource_request(request.url.path, self.arm.store, self._pager(request))
        if found is None:
            return not_served(request.method, request.url.path)
        return JSONResponse(found[1], found[0])

    def _write(self, request: Request, kind: str, name: str, payload) -> tuple:
        """A PUT or PATCH of a profile or pool, checked against its schema and recorded:
        (status, recorded) or (error response, None)."""
        if not isinstance(payload, dict):
            return _error(400, "InvalidRequestContent", "The request content was not valid."), None
        existing = self.arm.store.get(request.url.path)
        if request.method == "PATCH":
            if existing is None:
                return JSONResponse(not_found(kind, name, request.url.path), 404), None
            resource = _merged(_writable(existing.body), payload)
        else:
            resource = _writable(payload)
        resource.update(type=kind, apiVersion=request.query_params["api-version"], name=name)
        problems = self.arm.schemas.check(resource)
        if problems:
            return _invalid_content(problems[0]), None
        if kind == STANDBY_POOLS:
            elasticity = (resource.get("properties") or {}).get("elasticityProfile") or {}
            capacity = elasticity.get("maxReadyCapacity")
            if isinstance(capacity, int) and capacity > 2000:
                # The REST spec (standbyContainerGroupPool.tsp) bounds it to 0..2000.
                return _error(
                    400,
                    "InvalidRequestContent",
                    f"maxReadyCapacity must be between 0 and 2000; got {capacity}.",
                ), None
        recorded = self.arm.store.record(resource, self._context(request))
        return (200 if existing is not None else 201), recorded

    def _profile(self, request: Request, params: dict, payload) -> Response:
        """ContainerGroupProfiles_* (2025-09-01): PUT and PATCH (each a new revision), GET, the
        lists, DELETE (its revisions with it), and the revisions (ListAllRevisions,
        GetByRevisionNumber)."""
        split = split_path(request.url.path)
        assert split is not None
        _, kind, name = split
        if kind.lower() == PROFILE_REVISIONS.lower() or name is None:
            if request.method != "GET":
                return _error(405, "MethodNotAllowed", f"{request.method} is not supported here.")
            return self._stored(request)
        if kind.lower() != CONTAINER_GROUP_PROFILES.lower():
            return not_served(request.method, request.url.path)
        if request.method == "GET":
            return self._stored(request)
        if request.method == "DELETE":
            removed = self.arm.store.remove_tree(request.url.path)
            if removed is None:
                return Response(status_code=204)
            return Response(status_code=200)
        if request.method not in ("PUT", "PATCH"):
            return _error(405, "MethodNotAllowed", f"{request.method} is not supported here.")
        status, recorded = self._write(request, CONTAINER_GROUP_PROFILES, name, payload)
        if recorded is None:
            return status
        return JSONResponse(recorded.body, status)

    def _pool(self, request: Request, params: dict, payload) -> Response:
        """StandbyContainerGroupPools_* (2026-04-01): PUT and DELETE long-running
        (Azure-AsyncOperation), PATCH, GET, the lists, and the runtime views (`latest` only)."""
        split = split_path(request.url.path)
        assert split is not None
        parent, kind, name = split
        if kind.lower() == f"{STANDBY_POOLS}/runtimeViews".lower():
            pool = self.arm.store.get(parent)
            if request.method != "GET":
                return _error(405, "MethodNotAllowed", f"{request.method} is not supported here.")
            if pool is None:
                pool_name = parent.rsplit("/", 1)[-1]
                return JSONResponse(not_found(STANDBY_POOLS, pool_name, parent), 404)
            view = self.standby.runtime_view(pool)
            if name is None:
                return JSONResponse({"value": [view]})
            if name.lower() != "latest":
                return JSONResponse(not_found(kind, name, request.url.path), 404)
            return JSONResponse(view)
        if kind.lower() != STANDBY_POOLS.lower():
            return not_served(request.method, request.url.path)
        if name is None or request.method == "GET":
            if request.method != "GET":
                return _error(405, "MethodNotAllowed", f"{request.method} is not supported here.")
            return self._stored(request)
        if request.method == "DELETE":
            removed = self.arm.store.remove(request.url.path)
            if removed is None:
                return Response(status_code=204)
            headers = self._pool_operation_headers(request, removed.id)
            return Response(status_code=202, headers=headers)
        if request.method not in ("PUT", "PATCH"):
            return _error(405, "MethodNotAllowed", f"{request.method} is not supported here.")
        status, recorded = self._write(request, STANDBY_POOLS, name, payload)
        if recorded is None:
            return status
        if request.method == "PATCH":
            return JSONResponse(recorded.body, 200)
        headers = self._pool_operation_headers(request, recorded.id)
        headers.pop("Location")
        return JSONResponse(recorded.body, status, headers=headers)

    def _pool_operation_headers(self, request: Request, resource_id: str) -> dict[str, str]:
        operation = PoolOperation(uuid.uuid4().hex, resource_id)
        with self.lock:
            self.pool_operations[operation.id] = operation
        query = urlencode({"api-version": request.query_params["api-version"]})
        url = (
            f"{_origin(request)}/subscriptions/{self.config.subscription_id}/providers/"
            f"Microsoft.StandbyPool/locations/{self.config.location}/operationStatuses/"
            f"{operation.id}?{query}"
        )
        return {"Azure-AsyncOperation": url, "Location": url, "Retry-After": "1"}

    def _pool_operation(self, request: Request, params: dict, payload) -> Response:
        operation = self.pool_operations.get(params["op"].lower())
        if request.method != "GET":
            return _error(405, "MethodNotAllowed", "Use GET.")
        if operation is None:
            return _error(404, "OperationNotFound", "The operation could not be found.")
        resource_id = (
            f"/subscriptions/{self.config.subscription_id}/providers/Microsoft.StandbyPool/"
            f"locations/{self.config.location}/operationStatuses/{operation.id}"
        )
        return JSONResponse(operation.body(resource_id))

    # -- Key Vault --------------------------------------------------------------------------------

    def vault(self, request: Request, host: str, path: str) -> Response:
        """Key Vault's secrets API for the deployed vault at ``host``: a secret's current value,
        with the data action the caller's roles must allow (Key Vault Secrets User)."""
        vault = self.directory.vault(host)
        if vault is None:
            return _error(
                404, "VaultNotFound", f"No vault at {host} in the local Azure (deploy it first)."
            )
        claims = self._caller(request, VAULT_AUDIENCE)
        if claims is None:
            authority = f"https://login.microsoftonline.com/{self.config.tenant_id}"
            challenge = f'Bearer authorization="{authority}", resource="{VAULT_AUDIENCE}"'
            return _error(
                401,
                "Unauthorized",
                "AKV10000: Request is missing a Bearer or PoP token.",
                {"WWW-Authenticate": challenge},
            )
        action = vault_action(request.method, path)
        if not self.directory.authorization().allowed(
            claims["oid"], action, vault.id, data_action=True
        ):
            body = vault_forbidden(
                str(claims.get("appid")), claims["oid"], action, vault.body["name"]
            )
            return JSONResponse(body, 403)
        if request.method == "GET" and re.match(r"^/secrets/?$", path):
            return JSONResponse(self._secret_list(request, vault))
        match = re.match(r"^/secrets/(?P<name>[0-9a-zA-Z-]+)(?:/(?P<version>[0-9a-f]*))?/?$", path)
        if request.method != "GET" or match is None:
            return _error(
                400,
                "BadParameter",
                f"The request URI '{path}' is not valid for the local Key Vault.",
            )
        name = match.group("name")
        secret = self.directory.secret(vault, name)
        if secret is None:
            return _error(
                404,
                "SecretNotFound",
                f"A secret with (name/id) {name} was not found in this key vault.",
            )
        return JSONResponse(
            {
                "value": secret.secret,
                "id": secret.properties.get("secretUriWithVersion"),
                **_secret_item(secret),
            }
        )

    def _secret_list(self, request: Request, vault) -> dict:
        """Key Vault's GetSecrets (7.x): each secret's id and attributes, never a value; one page
        (`maxresults` at most 25, as Key Vault caps it, with its nextLink)."""
        host = f"https://{vault.body['name']}.vault.azure.net"
        entries = []
        for secret in self.directory.secrets(vault):
            name = secret.body["name"]
            entries.append((name.lower(), {"id": f"{host}/secrets/{name}", **_secret_item(secret)}))
        wanted = request.query_params.get("maxresults", "25")
        size = min(int(wanted), 25) if wanted.isdigit() and int(wanted) > 0 else 25
        page = Pager(f"{host}/secrets", dict(request.query_params), size).page(entries)
        return {"value": page["value"], "nextLink": page.get("nextLink")}

    # -- Microsoft Graph ----------------------------------------------------------------------

    def graph(self, request: Request, path: str, payload) -> Response:
        """Microsoft Graph's directoryObjects/getByIds, which `az role assignment list` asks to
        name the principals of the assignments: local Azure's identities as the service
        principals Microsoft Entra makes for managed identities. Nothing else of Graph is
        served."""
        claims = self._caller(request, GRAPH)
        if claims is None:
            return JSONResponse(
                {
                    "error": {
                        "code": "InvalidAuthenticationToken",
                        "message": "Access token is empty or invalid.",
                    }
                },
                401,
            )
        if request.method != "POST" or not re.match(
            r"^/v1\.0/directoryObjects/getByIds/?$", path, re.IGNORECASE
        ):
            return JSONResponse(
                {
                    "error": {
                        "code": "Request_ResourceNotFound",
                        "message": f"{request.method} {path} of Microsoft Graph is not served by "
                        "local Azure (only directoryObjects/getByIds).",
                    }
                },
                404,
            )
        ids = {str(i).lower() for i in ((payload or {}).get("ids") or [])}
        found = [
            {
                "@odata.type": "#microsoft.graph.servicePrincipal",
                "id": i.principal_id,
                "appId": i.client_id,
                "displayName": i.name,
                "servicePrincipalType": "ManagedIdentity",
                "servicePrincipalNames": [i.client_id, i.resource_id],
                "alternativeNames": ["isExplicit=True", i.resource_id],
            }
            for i in self.directory.identities()
            if i.principal_id.lower() in ids
        ]
        provider = self.config.standby_pool_provider_principal_id
        if provider.lower() in ids:
            # The first-party application's service principal in this tenant.
            found.append(
                {
                    "@odata.type": "#microsoft.graph.servicePrincipal",
                    "id": provider,
                    "appId": PROVIDER_APP_ID,
                    "displayName": "Standby Pool Resource Provider",
                    "servicePrincipalType": "Application",
                    "servicePrincipalNames": [PROVIDER_APP_ID],
                }
            )
        return JSONResponse(
            {
                "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#directoryObjects",
                "value": found,
            }
        )

    # -- identities -------------------------------------------------------------------------------

    # The stack's secret of the IMDS router (imds_router.ROUTER_SECRET_ENV); None: the router's
    # word is never taken.
    router_secret: str | None = None

    def _from_router(self, request: Request) -> bool:
        """The IMDS router (one for all stacks) calls from its address with this stack's secret
        for it; a container on its network can take the address, not the secret."""
        caller = request.client.host if request.client else ""
        given = request.headers.get(ROUTER_SECRET_HEADER, "")
        return (
            caller == IMDS_ADDRESS
            and bool(self.router_secret)
            and secrets.compare_digest(given, self.router_secret or "")
        )

    def imds_token(self, request: Request) -> Response:
        refused = imds_request_error(request.headers, request.query_params)
        if refused is not None:
            return refused
        resource = request.query_params["resource"]
        caller = request.client.host if request.client else ""
        if caller == IMDS_ADDRESS:
            if not self._from_router(request):
                return _identity_error(400, "Identity not found")
            # The router says who called it.
            caller = request.headers.get(CALLER_HEADER, "")
        assigned = [
            self.directory.identity_by_resource_id(i)
            for i in self.groups.identities_of_address(caller)
        ]
        assigned = [i for i in assigned if i is not None]
        wanted = request.query_params.get("client_id")
        wanted_object = request.query_params.get("object_id")
        wanted_resource = request.query_params.get("msi_res_id") or request.query_params.get(
            "mi_res_id"
        )
        if wanted:
            chosen = [i for i in assigned if i.client_id.lower() == wanted.lower()]
        elif wanted_object:
            chosen = [i for i in assigned if i.principal_id.lower() == wanted_object.lower()]
        elif wanted_resource:
            chosen = [i for i in assigned if i.resource_id.lower() == wanted_resource.lower()]
        else:
            chosen = assigned if len(assigned) == 1 else []
        if not chosen:
            return _identity_error(400, "Identity not found")
        return JSONResponse(
            self._token(
                resource, chosen[0].client_id, chosen[0].principal_id, chosen[0].resource_id
            )
        )

    def _token(self, resource: str, client_id: str, principal_id: str, mirid: str) -> dict:
        issued = self.issuer.issue(resource, client_id, principal_id, mirid)
        return {
            "access_token": issued.token,
            "refresh_token": "",
            "expires_in": str(issued.expires_on - int(time.time())),
            "expires_on": str(issued.expires_on),
            "not_before": str(int(time.time())),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": client_id,
        }

    def deployer_token(self, request: Request) -> Response:
        """The App Service managed identity protocol (IDENTITY_ENDPOINT / IDENTITY_HEADER) for the
        stack's own calls from the host: the deployer's token, or, as App Service gives a
        user-assigned identity named by `client_id`, `principal_id` (alias `object_id`) or
        `mi_res_id` (its 2019-08-01 REST reference; MSAL sends one of client_id, object_id,
        mi_res_id), the token of any identity the local Azure knows; one it does not know gets
        App Service's 400 "Unable to load the proper Managed Identity"."""
        if not self._from_deployer(request):
            return _identity_error(401, "X-IDENTITY-HEADER is missing or wrong")
        query = request.query_params
        resource = query.get("resource")
        if not resource:
            return _identity_error(400, "resource is required")
        named = [
            (key, query[key])
            for key in ("client_id", "principal_id", "object_id", "mi_res_id")
            if query.get(key)
        ]
        if len(named) > 1:
            return _identity_error(
                400, "Give one of client_id, principal_id, object_id or mi_res_id, not several"
            )
        if named:
            [(key, wanted)] = named
            field = {"client_id": "client_id", "mi_res_id": "resource_id"}.get(key, "principal_id")
            chosen = next(
                (
                    i
                    for i in self.directory.identities()
                    if getattr(i, field).lower() == wanted.lower()
                ),
                None,
            )
            if chosen is None:
                return JSONResponse(
                    {"statusCode": 400, "message": "Unable to load the proper Managed Identity."},
                    400,
                )
        else:
            chosen = self.directory.identity_by_principal(self.config.admin_principal_id)
            assert chosen is not None
        return JSONResponse(
            self._token(resource, chosen.client_id, chosen.principal_id, chosen.resource_id)
        )

    def _from_deployer(self, request: Request) -> bool:
        """The stack's own door: the caller holds the deployer's secret."""
        header = request.headers.get("x-identity-header", "")
        return secrets.compare_digest(header, self.deployer_secret)

    def faults_left(self, request: Request) -> Response:
        if not self._from_deployer(request):
            return _error(401, "Unauthorized", "X-IDENTITY-HEADER is missing or wrong.")
        with self.lock:
            return JSONResponse({"faults": sum(f.times for f in self.faults)})

    def settings(self, request: Request, payload: dict | None) -> Response:
        """The LocalAzure settings a test may change at run time (SETTINGS), shown (GET) or set
        (POST a JSON object of some of them), behind the deployer's secret."""
        if not self._from_deployer(request):
            return _error(401, "Unauthorized", "X-IDENTITY-HEADER is missing or wrong.")
        if payload is not None:
            unknown = sorted(set(payload) - set(SETTINGS)) if isinstance(payload, dict) else []
            try:
                values = {k: float(v) for k, v in payload.items()} if not unknown else {}
            except (AttributeError, TypeError, ValueError):
                values = {}
            if unknown or not values or any(v < 0 for v in values.values()):
                return _error(
                    400,
                    "BadRequest",
                    f"Settings are non-negative numbers of: {', '.join(SETTINGS)} "
                    f"(unknown: {', '.join(unknown) or 'none'}).",
                )
            with self.lock:
                for key, value in values.items():
                    setattr(self.config, key, value)
        return JSONResponse({key: getattr(self.config, key) for key in SETTINGS})

    def add_fault(self, request: Request, payload: dict) -> Response:
        if not self._from_deployer(request):
            return _error(401, "Unauthorized", "X-IDENTITY-HEADER is missing or wrong.")
        try:
            fault = Fault(
                payload["method"].upper(),
                payload["path_contains"],
                int(payload["status"]),
                int(payload.get("times", 1)),
                str(payload.get("code", Fault.code)),
                str(payload.get("message", Fault.message)),
                list(payload.get("details") or []),
                payload.get("in_operation", False) is True,
                None if payload.get("retry_after") is None else int(payload["retry_after"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            return _error(
                400,
                "BadRequest",
                "A fault needs method, path_contains, status and times (code, message, details, "
                "in_operation and retry_after are optional).",
            )
        with self.lock:
            self.faults.append(fault)
        return JSONResponse({"faults": len(self.faults)}, 201)


def https_app(aci: LocalAci) -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.api_route("/_local/health", methods=["GET"])
    def health() -> dict:
        return {"status": "ok"}

    @app.api_route("/_local/msi/token", methods=["GET"])
    def deployer(request: Request) -> Response:
        return aci.deployer_token(request)

    @app.api_route("/_local/faults", methods=["GET"])
    def faults_left(request: Request) -> Response:
        return aci.faults_left(request)

    @app.api_route("/_local/settings", methods=["GET"])
    def settings(request: Request) -> Response:
        return aci.settings(request, None)

    @app.api_route("/_local/settings", methods=["POST"])
    async def change_settings(request: Request) -> Response:
        try:
            payload = json.loads(await request.body())
        except ValueError:
            return _error(400, "BadRequest", "JSON body expected.")
        return aci.settings(request, payload)

    @app.api_route("/_local/faults", methods=["POST"])
    async def faults(request: Request) -> Response:
        try:
            payload = json.loads(await request.body())
        except ValueError:
            return _error(400, "BadRequest", "JSON body expected.")
        return aci.add_fault(request, payload)

    registries = ContainerRegistries(aci.config, lambda: aci.arm.store, aci.issuer)

    @app.api_route("/{path:path}", methods=["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD"])
    async def anything(request: Request, path: str) -> Response:
        body = await request.body()
        host = (request.headers.get("host") or "").split(":")[0].lower()
        if host.endswith(".azurecr.io"):
            return await registries.handle(request, host, f"/{path}", body)
        if host.endswith(".vault.azure.net"):
            return await _threaded(aci.vault, request, host, f"/{path}")
        if host == GRAPH_HOST:
            try:
                payload = json.loads(body) if body else None
            except ValueError:
                payload = None
            return await _threaded(aci.graph, request, f"/{path}", payload)
        return await _threaded(aci.management, request, f"/{path}", body)

    return app


def imds_app(aci: LocalAci) -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/metadata/identity/oauth2/token")
    async def token(request: Request) -> Response:
        return await _threaded(aci.imds_token, request)

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE"])
    def other(path: str) -> Response:
        return JSONResponse(
            {"error": "not_found", "error_description": f"/{path} is not served by the local IMDS"},
            404,
        )

    return app


# What a profile's or pool's provider sets itself: never taken from a request.
READ_ONLY = ("revision", "registeredRevisions", "provisioningState")


def _writable(body: dict) -> dict:
    """A resource's body without its id, name, type and read-only properties."""
    copied = json.loads(json.dumps(body))
    found = {k: v for k, v in copied.items() if k not in ("id", "name", "type")}
    if isinstance(found.get("properties"), dict):
        found["properties"] = {k: v for k, v in found["properties"].items() if k not in READ_ONLY}
    return found


def _merged(base: dict, patch: dict) -> dict:
    """JSON merge patch (RFC 7396), as ARM's PATCH bodies are read: objects merge, null
    removes, anything else replaces."""
    merged = dict(base)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


async def _threaded(function, *args):
    """The handlers block (Docker calls, locks): run them off the event loop."""
    return await run_in_threadpool(function, *args)
