"""Azure Container Registry's data plane at https://<name>.azurecr.io, for the registries the local
Resource Manager deployed (found in its store by `loginServer`), in front of a plain OCI registry
(LocalAzure.registry_upstream, e.g. Debian's docker-registry).

Authentication is ACR's, as its docs (Azure/acr docs/AAD-OAuth.md) and azure-containerregistry's
exchange clients speak it:
- `POST /oauth2/exchange` (grant_type=access_token, service, tenant, access_token): an Azure AD
  token this local Azure issued becomes an ACR refresh token (a JWT whose `permissions` are the
  registry actions the caller's roles allow, as in ACR's documented claim set). An identity with
  no role on the registry is refused (401), as ACR refuses it.
- `POST /oauth2/token` (grant_type=refresh_token, or password with the null GUID user as docker
  sends it) and `GET /oauth2/token` with basic auth (docker's default): an access token whose
  `access` holds, per requested scope (`repository:<name>:pull,push`), only the actions granted.
- `/v2/...` and `/acr/v1/...` answer 401 with `WWW-Authenticate: Bearer realm=...,service=...,
  scope=...` until a fitting access token comes.

Actions map to Azure RBAC on the registry's resource id: pull and metadata_read need
`.../registries/pull/read` (AcrPull), push and metadata_write `.../push/write` (AcrPush), delete
`.../artifacts/delete` (AcrDelete). `/v2/...` then goes to the upstream, each registry's
repositories under `<registry name>/` there so that two registries never share an image.
`/acr/v1/<repository>/_tags` (list, delete) is ACR's own tag API, answered from the upstream's
tags; a tag's times are when it was pushed through here (else its image's `created`).

Errors have ACR's shape ({"errors": [{code, message, detail}]}) and the distribution spec's codes
(UNAUTHORIZED, NAME_UNKNOWN, TAG_UNKNOWN, UNSUPPORTED, UNAVAILABLE); which code ACR gives a
malformed token request was not confirmed, so those are local choices."""

import asyncio
import base64
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote, urlsplit

import httpx
import jwt
from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse

from prefect_aci.local_aci.authorization import ACR_PULL_ACTION
from prefect_aci.local_aci.config import LocalAzure
from prefect_aci.local_aci.directory import Directory
from prefect_aci.local_aci.resources import Recorded, ResourceStore
from prefect_aci.local_aci.tokens import TokenIssuer

REGISTRIES = "Microsoft.ContainerRegistry/registries"
ACR_PUSH_ACTION = "Microsoft.ContainerRegistry/registries/push/write"
ACR_DELETE_ACTION = "Microsoft.ContainerRegistry/registries/artifacts/delete"
# ACR's scope actions and the RBAC action each needs.
SCOPE_ACTIONS = {
    "pull": ACR_PULL_ACTION,
    "metadata_read": ACR_PULL_ACTION,
    "push": ACR_PUSH_ACTION,
    "metadata_write": ACR_PUSH_ACTION,
    "delete": ACR_DELETE_ACTION,
}
# Azure AD audiences ACR takes at /oauth2/exchange: its own, and Resource Manager's (the az CLI
# and azure-containerregistry's default exchange ARM tokens).
AAD_AUDIENCES = (
    "https://containerregistry.azure.net",
    "https://management.azure.com",
    "https://management.core.windows.net",
)
NULL_USER = "00000000-0000-0000-0000-000000000000"
ISSUER = "Azure Container Registry"
# The refresh token lives 3 hours (Microsoft Learn, `az acr login --expose-token`); the access
# token 75 minutes (the lifetime in AAD-OAuth.md's example claim set).
REFRESH_SECONDS = 3 * 3600
ACCESS_SECONDS = 75 * 60
AUTHORIZATION_HELP = "visit https://aka.ms/acr/authorization for more information."
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)
HOP_HEADERS = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "host", "date", "server"}
)
V2_PATH = re.compile(r"^/v2/(?P<name>.+?)/(?P<kind>manifests|blobs|tags)/(?P<rest>.*)$")
TAGS_PATH = re.compile(r"^/acr/v1/(?P<name>.+?)/_tags(?:/(?P<tag>[^/]+))?/?$")


def acr_error(
    status: int, code: str, message: str, detail=None, headers: dict | None = None
) -> JSONResponse:
    """ACR's (the distribution spec's) error shape: {"errors": [{code, message, detail}]}."""
    error = {"code": code, "message": message}
    if detail is not None:
        error["detail"] = detail
    return JSONResponse({"errors": [error]}, status, headers=headers)


@dataclass(frozen=True)
class Scope:
    type: str  # repository or registry
    name: str
    actions: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> "Scope | None":
        kind, _, rest = text.partition(":")
        name, _, actions = rest.rpartition(":")
        if kind not in ("repository", "registry") or not name:
            return None
        return cls(kind, name, tuple(a for a in actions.split(",") if a))

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"


class ContainerRegistries:
    """The data plane of every deployed registry (one per login server)."""

    def __init__(
        self, config: LocalAzure, store: Callable[[], ResourceStore], issuer: TokenIssuer
    ) -> None:
        """``store``: the local Resource Manager's, asked on each request (what it deployed)."""
        self.config = config
        self.store = store
        self.issuer = issuer
        # ACR's own tokens are opaque to clients (they read only `exp`): signed with a key of this
        # process, so they end with it, as a rotated ACR key ends them.
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._times: dict[tuple[str, str, str], tuple[str, str]] = {}  # created, updated
        self._http: httpx.AsyncClient | None = None
        self._http_loop: asyncio.AbstractEventLoop | None = None

    # -- the registry behind a login server ------------------------------------------------------

    def registry(self, login_server: str) -> Recorded | None:
        wanted = login_server.lower()
        return next(
            (
                r
                for r in self.store().by_type(REGISTRIES)
                if str(r.properties.get("loginServer", "")).lower() == wanted
            ),
            None,
        )

    async def handle(self, request: Request, host: str, path: str, body: bytes) -> Response:
        registry = self.registry(host)
        if registry is None:
            # In Azure the name would not resolve; here the stand-in answers for every name.
            return acr_error(
                404,
                "NAME_UNKNOWN",
                f"registry {host} is not known: no Microsoft.ContainerRegistry/registries "
                "resource with this loginServer is deployed in the local Azure",
                {"name": host},
            )
        if path == "/oauth2/exchange":
            return self._exchange(request, registry, body)
        if path == "/oauth2/token":
            return self._token(request, registry, body)
        if path.rstrip("/") == "/v2":
            return self._base(request, registry)
        try:
            if path == "/v2/_catalog":
                return await self._catalog(request, registry)
            if path.startswith("/acr/v1/"):
                return await self._tags(request, registry, path)
            if V2_PATH.match(path):
                return await self._proxy(request, registry, path, body)
        except httpx.HTTPError as exc:
            return acr_error(
                503,
                "UNAVAILABLE",
                f"the registry's storage ({self.config.registry_upstream}) failed: "
                f"{type(exc).__name__}: {exc}",
            )
        return acr_error(404, "NOT_FOUND", f"{request.method} {path} is not an ACR API")

    # -- /oauth2 -----------------------------------------------------------------------------

    def _exchange(self, request: Request, registry: Recorded, body: bytes) -> Response:
        if request.method != "POST":
            return acr_error(405, "UNSUPPORTED", "Use POST.")
        form = dict(parse_qsl(body.decode(errors="replace")))
        login_server = registry.properties["loginServer"]
        if form.get("grant_type") != "access_token":
            return acr_error(
                400,
                "UNSUPPORTED",
                f"grant_type '{form.get('grant_type')}' is not supported; the local ACR takes "
                "grant_type=access_token (the refresh-token grants are deprecated)",
            )
        if (form.get("service") or "").lower() != login_server:
            return acr_error(400, "UNSUPPORTED", f"service must be this registry, {login_server}")
        claims = self._aad_claims(form.get("access_token", ""))
        if claims is None or (form.get("tenant") or claims["tid"]) != claims["tid"]:
            return acr_error(
                401,
                "UNAUTHORIZED",
                "the access token is not a valid Azure AD token of this tenant for "
                "https://containerregistry.azure.net (or Resource Manager)",
            )
        allowed = [
            action
            for action in (ACR_PULL_ACTION, ACR_PUSH_ACTION, ACR_DELETE_ACTION)
            if Directory(self.config, self.store())
            .authorization()
            .allowed(claims["oid"], action, registry.id)
        ]
        if not allowed:
            return acr_error(
                401,
                "UNAUTHORIZED",
                f"principal {claims['oid']} has no role on registry {registry.body['name']} "
                f"that lets it pull, push or delete (AcrPull, AcrPush, AcrDelete); "
                f"{AUTHORIZATION_HELP}",
            )
        now = int(time.time())
        refresh = {
            "jti": str(uuid.uuid4()),
            "sub": claims["oid"],
            "nbf": now,
            "exp": now + REFRESH_SECONDS,
            "iat": now,
            "iss": ISSUER,
            "aud": login_server,
            "version": "1.0",
            "grant_type": "refresh_token",
            "tenant": claims["tid"],
            "permissions": {"actions": allowed, "notActions": []},
            "roles": [],
        }
        return JSONResponse({"refresh_token": jwt.encode(refresh, self._key, algorithm="HS256")})

    def _aad_claims(self, token: str) -> dict | None:
        for audience in AAD_AUDIENCES:
            claims = self.issuer.verify(token, audience)
            if claims is not None:
                return claims
        return None

    def _acr_claims(self, token: str, login_server: str, grant_type: str) -> dict | None:
        """The claims of an ACR token of ``grant_type`` this process issued for this registry."""
        try:
            claims = jwt.decode(
                token, self._key, algorithms=["HS256"], audience=login_server, issuer=ISSUER
            )
        except jwt.PyJWTError:
            return None
        return claims if claims.get("grant_type") == grant_type else None

    def _token(self, request: Request, registry: Recorded, body: bytes) -> Response:
        login_server = registry.properties["loginServer"]
        if request.method == "POST":
            pairs = parse_qsl(body.decode(errors="replace"))
        elif request.method == "GET":
            pairs = list(request.query_params.multi_items())
        else:
            return acr_error(405, "UNSUPPORTED", "Use POST (or GET with basic auth).")
        form = dict(pairs)
        if (form.get("service") or "").lower() != login_server:
            return acr_error(400, "UNSUPPORTED", f"service must be this registry, {login_server}")
        grant = form.get("grant_type", "")
        # The refresh token presented; "" for an anonymous caller; None for credentials local ACR
        # does not have (an admin user, repository-scoped tokens).
        refresh_token: str | None
        if request.method == "GET":
            header = request.headers.get("authorization")
            user, password = _basic(header or "")
            refresh_token = "" if header is None else password if user == NULL_USER else None
        elif grant == "refresh_token":
            refresh_token = form.get("refresh_token")
        elif grant == "password" and form.get("username") == NULL_USER:
            refresh_token = form.get("password")
        elif grant == "password" and not form.get("username"):
            refresh_token = form.get("refresh_token") or ""  # the SDK's anonymous client
        elif grant == "password":
            refresh_token = None
        else:
            return acr_error(
                400,
                "UNSUPPORTED",
                f"grant_type '{grant}' is not supported by the local ACR (refresh_token, or "
                f"password with user {NULL_USER})",
            )
        if refresh_token == "" and registry.properties.get("anonymousPullEnabled"):
            permissions = [ACR_PULL_ACTION]
            subject = ""
        else:
            claims = self._acr_claims(refresh_token or "", login_server, "refresh_token")
            if claims is None:
                return acr_error(
                    401,
                    "UNAUTHORIZED",
                    f"the refresh token is not a valid ACR refresh token of {login_server}; get "
                    f"one from POST https://{login_server}/oauth2/exchange",
                )
            permissions = claims["permissions"]["actions"]
            subject = claims["sub"]
        scopes = [
            scope
            for key, value in pairs
            if key == "scope"
            for text in value.split()
            if (scope := Scope.parse(text)) is not None
        ]
        access = [self._granted(scope, permissions) for scope in scopes]
        now = int(time.time())
        claims = {
            "jti": str(uuid.uuid4()),
            "sub": subject,
            "nbf": now,
            "exp": now + ACCESS_SECONDS,
            "iat": now,
            "iss": ISSUER,
            "aud": login_server,
            "version": "1.0",
            "access": access,
            "roles": [],
            "grant_type": "access_token",
        }
        return JSONResponse({"access_token": jwt.encode(claims, self._key, algorithm="HS256")})

    @staticmethod
    def _granted(scope: Scope, permissions: list[str]) -> dict:
        """The requested actions the refresh token's permissions allow (ACR grants the part it
        can, an empty list when nothing: the registry then refuses the call)."""
        if scope.type == "registry":
            ok = scope.name == "catalog" and ACR_PULL_ACTION in permissions
            return {"type": "registry", "name": scope.name, "actions": ["*"] if ok else []}
        wanted = tuple(SCOPE_ACTIONS) if "*" in scope.actions else scope.actions
        actions = [a for a in wanted if SCOPE_ACTIONS.get(a) in permissions]
        return {"type": "repository", "name": scope.name, "actions": actions}

    # -- the bearer challenge ----------------------------------------------------------------------

    def _access(self, request: Request, registry: Recorded) -> list[dict] | None:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("bearer "):
            return None
        claims = self._acr_claims(header[7:], registry.properties["loginServer"], "access_token")
        return None if claims is None else claims.get("access") or []

    def _challenge(self, request: Request, registry: Recorded, scope: Scope | None) -> Response:
        login_server = registry.properties["loginServer"]
        host = request.headers.get("host") or login_server
        challenge = f'Bearer realm="https://{host}/oauth2/token",service="{login_server}"'
        detail = None
        if scope is not None:
            challenge += f',scope="{scope}"'
            detail = [
                {"Type": scope.type, "Name": scope.name, "Action": action}
                for action in scope.actions
            ]
        return acr_error(
            401,
            "UNAUTHORIZED",
            f"authentication required, {AUTHORIZATION_HELP}",
            detail,
            {"WWW-Authenticate": challenge, "Docker-Distribution-Api-Version": "registry/2.0"},
        )

    def _refused(self, request: Request, registry: Recorded, scope: Scope) -> Response | None:
        """None when the request's access token grants ``scope``; else ACR's 401 challenge."""
        access = self._access(request, registry)
        if access is not None:
            granted = {
                action
                for entry in access
                if entry.get("type") == scope.type and entry.get("name") == scope.name
                for action in entry.get("actions") or []
            }
            if "*" in granted or set(scope.actions) <= granted:
                return None
        return self._challenge(request, registry, scope)

    def _base(self, request: Request, registry: Recorded) -> Response:
        if self._access(request, registry) is None:
            return self._challenge(request, registry, None)
        return JSONResponse({}, headers={"Docker-Distribution-Api-Version": "registry/2.0"})

    # -- the upstream ------------------------------------------------------------------------------

    def _upstream(self) -> str | None:
        return self.config.registry_upstream.rstrip("/") if self.config.registry_upstream else None

    def _client(self) -> httpx.AsyncClient:
        """One client (its connections kept) per event loop: making one costs a CA bundle load.
        The upstream is a direct address: no proxy from the environment."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._http is None or self._http_loop is not loop:
                self._http = httpx.AsyncClient(
                    base_url=self._upstream() or "",
                    timeout=httpx.Timeout(300, connect=10),
                    trust_env=False,
                )
                self._http_loop = loop
            return self._http

    def _unavailable(self) -> Response:
        return acr_error(
            503,
            "UNAVAILABLE",
            "the local ACR has no storage: LocalAzure.registry_upstream (the plain OCI registry "
            "behind it) is not set",
        )

    async def _catalog(self, request: Request, registry: Recorded) -> Response:
        refused = self._refused(request, registry, Scope("registry", "catalog", ("*",)))
        if refused is not None:
            return refused
        upstream = self._upstream()
        if upstream is None:
            return self._unavailable()
        prefix = f"{registry.body['name'].lower()}/"
        names: list[str] = []
        while True:  # distribution's pages (at most 1000 names each), followed to the end
            params = {"n": "1000", **({"last": names[-1]} if names else {})}
            response = await self._client().get("/v2/_catalog", params=params)
            response.raise_for_status()
            page = response.json().get("repositories") or []
            names += page
            if not page or "link" not in response.headers:
                break
        return JSONResponse(
            {"repositories": sorted(n[len(prefix) :] for n in names if n.startswith(prefix))}
        )

    async def _proxy(
        self, request: Request, registry: Recorded, path: str, body: bytes
    ) -> Response:
        match = V2_PATH.match(path)
        assert match is not None
        name = match["name"]
        if request.method in ("GET", "HEAD"):
            actions = ("pull",)
        elif request.method == "DELETE":
            actions = ("delete",)
        else:
            actions = ("pull", "push")
        refused = self._refused(request, registry, Scope("repository", name, actions))
        if refused is not None:
            return refused
        upstream = self._upstream()
        if upstream is None:
            return self._unavailable()
        registry_name = registry.body["name"].lower()
        query = []
        for key, value in request.query_params.multi_items():
            if key == "from":
                # A cross-repository mount needs pull on the source; without it, drop the mount
                # and the upstream starts a plain upload, as the distribution spec allows.
                if self._refused(request, registry, Scope("repository", value, ("pull",))):
                    query = [(k, v) for k, v in query if k != "mount"]
                    continue
                value = f"{registry_name}/{value}"
            query.append((key, value))
        if any(k == "mount" for k, _ in query) and not any(k == "from" for k, _ in query):
            query = [(k, v) for k, v in query if k != "mount"]
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in HOP_HEADERS and k.lower() not in ("authorization", "content-length")
        }
        target = f"/v2/{registry_name}/{name}/{match['kind']}/{match['rest']}"
        client = self._client()
        upstream_request = client.build_request(
            request.method, target, params=query, headers=headers, content=body or None
        )
        response = await client.send(upstream_request, stream=True)
        answer_headers = self._answer_headers(response.headers, upstream, registry_name)
        if (
            match["kind"] == "manifests"
            and request.method == "PUT"
            and response.status_code == 201
            and not match["rest"].startswith("sha256:")
        ):
            self._pushed(registry_name, name, match["rest"])

        if match["kind"] == "tags" and response.status_code == 200:
            listed = json.loads(await response.aread())
            await response.aclose()
            listed["name"] = name
            return JSONResponse(listed, headers=_without(answer_headers, "content-length"))
        if response.status_code >= 400 and request.method != "HEAD":
            # The upstream's errors name its repository (`<registry>/<name>`): ACR's name theirs.
            text = (await response.aread()).decode(errors="replace")
            await response.aclose()
            return Response(
                text.replace(f'"{registry_name}/{name}"', json.dumps(name)),
                response.status_code,
                headers=_without(answer_headers, "content-length"),
            )
        if request.method == "HEAD":
            await response.aclose()
            return Response(status_code=response.status_code, headers=answer_headers)
        return StreamingResponse(
            response.aiter_raw(),
            status_code=response.status_code,
            headers=answer_headers,
            background=BackgroundTask(response.aclose),
        )

    @staticmethod
    def _answer_headers(headers: httpx.Headers, upstream: str, registry_name: str) -> dict:
        """The upstream's headers, its locations made relative (as ACR answers them, and as
        azure-containerregistry needs them) and its repository names without the prefix."""
        answer = {}
        origin = urlsplit(upstream)
        for key, value in headers.items():
            if key.lower() in HOP_HEADERS:
                continue
            if key.lower() in ("location", "link"):
                value = value.replace(f"{origin.scheme}://{origin.netloc}", "")
                value = value.replace(f"/v2/{registry_name}/", "/v2/")
            answer[key] = value
        return answer

    def _pushed(self, registry_name: str, repository: str, tag: str) -> None:
        stamp = _iso(time.time())
        key = (registry_name, repository, tag)
        with self._lock:
            created = self._times.get(key, (stamp, stamp))[0]
            self._times[key] = (created, stamp)

    # -- /acr/v1/<repository>/_tags ---------------------------------------------------------------

    async def _tags(self, request: Request, registry: Recorded, path: str) -> Response:
        match = TAGS_PATH.match(path)
        if match is None:
            return acr_error(
                404, "NOT_FOUND", f"{path}: the local ACR serves only /acr/v1/<name>/_tags"
            )
        name, tag = match["name"], match["tag"]
        if request.method == "GET" and tag is None:
            needed = "metadata_read"
        elif request.method == "DELETE" and tag is not None:
            needed = "delete"
        else:
            return acr_error(
                405,
                "UNSUPPORTED",
                f"{request.method} {path} is not supported by the local ACR (list, delete)",
            )
        refused = self._refused(request, registry, Scope("repository", name, (needed,)))
        if refused is not None:
            return refused
        upstream = self._upstream()
        if upstream is None:
            return self._unavailable()
        registry_name = registry.body["name"].lower()
        client = _Repository(self._client(), f"/v2/{registry_name}/{name}")
        listed = await client.get("/tags/list")
        if listed.status_code == 404:
            return acr_error(
                404, "NAME_UNKNOWN", "repository name not known to registry", {"name": name}
            )
        listed.raise_for_status()
        found = await asyncio.gather(
            *(self._tag(client, registry_name, name, t) for t in listed.json().get("tags") or [])
        )
        tags = [t for t in found if t]
        if tag is None:
            return self._tag_list(request, registry, name, tags)
        return await self._delete_tag(client, registry_name, name, tag, tags)

    async def _tag(
        self, client: "_Repository", registry_name: str, repository: str, tag: str
    ) -> dict | None:
        response = await client.get(f"/manifests/{tag}", headers={"Accept": MANIFEST_TYPES})
        if response.status_code != 200:
            return None
        with self._lock:
            times = self._times.get((registry_name, repository, tag))
        if times is None:
            created = await _image_created(client, response.json())
            times = (created, created)
        return {
            "name": tag,
            "digest": response.headers["Docker-Content-Digest"],
            "createdTime": times[0],
            "lastUpdateTime": times[1],
            "signed": False,
            "changeableAttributes": {
                "deleteEnabled": True,
                "writeEnabled": True,
                "readEnabled": True,
                "listEnabled": True,
            },
        }

    def _tag_list(
        self, request: Request, registry: Recorded, name: str, tags: list[dict]
    ) -> Response:
        order = request.query_params.get("orderby", "")
        if order in ("timedesc", "timeasc"):
            tags.sort(key=lambda t: _moment(t["lastUpdateTime"]), reverse=order == "timedesc")
        else:
            tags.sort(key=lambda t: t["name"])
        last = request.query_params.get("last")
        if last:
            names = [t["name"] for t in tags]
            tags = tags[names.index(last) + 1 :] if last in names else []
        headers = {}
        size = request.query_params.get("n", "")
        if size.isdigit() and 0 < int(size) < len(tags):
            tags = tags[: int(size)]
            query = f"last={quote(tags[-1]['name'])}&n={size}&orderby={order}"
            headers["Link"] = f'</acr/v1/{name}/_tags?{query}>; rel="next"'
        body = {
            "registry": registry.properties["loginServer"],
            "imageName": name,
            "tags": tags,
        }
        return JSONResponse(body, headers=headers)

    async def _delete_tag(
        self,
        client: "_Repository",
        registry_name: str,
        name: str,
        tag: str,
        tags: list[dict],
    ) -> Response:
        """ACR untags; distribution 2.8 deletes only a manifest, with every tag on it: delete the
        manifest, then put it back under the tags that stay (its blobs stay until a garbage
        collection, which nothing here runs)."""
        doomed = next((t for t in tags if t["name"] == tag), None)
        if doomed is None:
            return acr_error(404, "TAG_UNKNOWN", "the specified tag does not exist", {"tag": tag})
        digest = doomed["digest"]
        manifest = await client.get(f"/manifests/{digest}", headers={"Accept": MANIFEST_TYPES})
        manifest.raise_for_status()
        deleted = await client.delete(f"/manifests/{digest}")
        if deleted.status_code != 202:
            return acr_error(
                deleted.status_code,
                "UNSUPPORTED",
                f"the registry's storage refused to delete {digest} (HTTP "
                f"{deleted.status_code}); its storage must allow deletes",
            )
        kept = [t["name"] for t in tags if t["digest"] == digest and t["name"] != tag]
        for other in kept:
            put = await client.put(
                f"/manifests/{other}",
                content=manifest.content,
                headers={"Content-Type": manifest.headers["Content-Type"]},
            )
            put.raise_for_status()
        with self._lock:
            self._times.pop((registry_name, name, tag), None)
        return Response(status_code=202)


@dataclass(frozen=True)
class _Repository:
    """One repository of the upstream, at its path there (`/v2/<registry>/<repository>`)."""

    client: httpx.AsyncClient
    path: str

    async def get(self, sub: str, **kwargs) -> httpx.Response:
        return await self.client.get(self.path + sub, **kwargs)

    async def put(self, sub: str, **kwargs) -> httpx.Response:
        return await self.client.put(self.path + sub, **kwargs)

    async def delete(self, sub: str) -> httpx.Response:
        return await self.client.delete(self.path + sub)


async def _image_created(client: _Repository, manifest: dict) -> str:
    """The `created` of an image's config (a tag pushed before this process saw it)."""
    config = (manifest.get("config") or {}).get("digest")
    if config:
        response = await client.get(f"/blobs/{config}")
        if response.status_code == 200:
            created = response.json().get("created")
            if created:
                return created
    return _iso(0)


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _moment(text: str) -> datetime:
    """A time as ACR and image configs write it (any fraction of a second), comparable."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return datetime.fromtimestamp(0, UTC)


def _basic(header: str) -> tuple[str | None, str | None]:
    if not header.lower().startswith("basic "):
        return None, None
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except ValueError:
        return None, None
    return user, password


def _without(headers: dict, name: str) -> dict:
    return {k: v for k, v in headers.items() if k.lower() != name}
