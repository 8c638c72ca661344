"""Local ACR (prefect_aci.local_aci.registry) as its clients meet it: azure-containerregistry's
ContainerRegistryClient and our own ACR code (image_builder.acr's exchange, image_builder.acr_tags)
reach `<name>.azurecr.io` over loopback HTTPS, go through ACR's bearer challenge and token
exchange, and push and pull through to Debian's docker-registry behind it."""

import base64
import hashlib
import uuid

import httpx
import jwt
import pytest
from azure.containerregistry import ArtifactTagOrder, ContainerRegistryClient
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ManagedIdentityCredential

from image_builder.acr import exchange_login
from image_builder.acr_tags import acr_client, delete_tags, list_tags, prune_plan
from image_builder.registry import ACR_TOKEN_USER
from prefect_aci.core.errors import UserError
from prefect_aci.local_aci.registry import ACR_PULL_ACTION, ACR_PUSH_ACTION
from tests.local_aci.acr_helpers import (
    CLEANER,
    LOGIN_SERVER,
    NOBODY,
    OTHER_LOGIN_SERVER,
    OTHER_REGISTRY,
    PULLER,
    PUSHER,
    REGISTRY,
    UNKNOWN_LOGIN_SERVER,
    LocalAcr,
    push_image,
)


@pytest.fixture(scope="module")
def acr(tmp_path_factory):
    local = LocalAcr(tmp_path_factory.mktemp("acr"))
    yield local
    local.close()


@pytest.fixture(autouse=True)
def reach(acr, monkeypatch):
    for name, value in acr.env().items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def repository() -> str:
    return f"team/app-{uuid.uuid4().hex[:8]}"


def http(acr: LocalAcr) -> httpx.Client:
    """A plain HTTPS client through the proxy, for the wire shapes themselves."""
    return httpx.Client(proxy=f"http://{acr.proxy.host}", verify=acr.tls.client_context())


def token(acr: LocalAcr, who, scope: str, server: str = LOGIN_SERVER) -> dict:
    """The claims of the access token ACR gives ``who`` for ``scope``, through the exchange."""
    refresh = exchange_login(server, acr.credential(who)).password.get_secret_value()
    with http(acr) as web:
        answer = web.post(
            f"https://{server}/oauth2/token",
            data={
                "grant_type": "refresh_token",
                "service": server,
                "scope": scope,
                "refresh_token": refresh,
            },
        )
    assert answer.status_code == 200, answer.text
    return jwt.decode(answer.json()["access_token"], options={"verify_signature": False})


# -- the challenge and the token exchange ------------------------------------------------------


def test_v2_without_a_token_answers_acrs_bearer_challenge(acr):
    with http(acr) as web:
        base = web.get(f"https://{LOGIN_SERVER}/v2/")
        manifest = web.get(f"https://{LOGIN_SERVER}/v2/team/app/manifests/latest")
    assert base.status_code == 401
    assert base.headers["www-authenticate"] == (
        f'Bearer realm="https://{LOGIN_SERVER}/oauth2/token",service="{LOGIN_SERVER}"'
    )
    assert manifest.status_code == 401
    assert manifest.headers["www-authenticate"].endswith(',scope="repository:team/app:pull"')
    [error] = manifest.json()["errors"]
    assert error["code"] == "UNAUTHORIZED"
    assert error["detail"] == [{"Type": "repository", "Name": "team/app", "Action": "pull"}]


def test_the_exchange_turns_the_deployers_azure_token_into_acr_docker_credentials(acr):
    # azure-identity's real ManagedIdentityCredential, from the stack's identity endpoint.
    login = exchange_login(LOGIN_SERVER, ManagedIdentityCredential())
    assert login.username == ACR_TOKEN_USER
    refresh = jwt.decode(login.password.get_secret_value(), options={"verify_signature": False})
    assert refresh["aud"] == LOGIN_SERVER
    assert refresh["sub"] == PUSHER.principal_id
    assert refresh["grant_type"] == "refresh_token"
    assert refresh["permissions"]["actions"] == [ACR_PULL_ACTION, ACR_PUSH_ACTION]


def test_an_identity_without_any_acr_role_is_refused_at_the_exchange(acr):
    with pytest.raises(UserError, match="needs AcrPush"):
        exchange_login(LOGIN_SERVER, acr.credential(NOBODY))


def test_an_azure_token_this_local_azure_did_not_issue_is_refused(acr):
    forged = jwt.encode(
        {"aud": "https://containerregistry.azure.net", "oid": PUSHER.principal_id, "tid": "t"},
        "not-the-local-key-0123456789abcdef",
        algorithm="HS256",
    )
    with http(acr) as web:
        answer = web.post(
            f"https://{LOGIN_SERVER}/oauth2/exchange",
            data={"grant_type": "access_token", "service": LOGIN_SERVER, "access_token": forged},
        )
    assert answer.status_code == 401
    assert answer.json()["errors"][0]["code"] == "UNAUTHORIZED"


def test_only_the_scopes_the_roles_allow_are_granted(acr):
    pusher = token(acr, PUSHER, "repository:team/app:pull,push,delete")
    puller = token(acr, PULLER, "repository:team/app:pull,push")
    assert pusher["access"] == [
        {"type": "repository", "name": "team/app", "actions": ["pull", "push"]}
    ]
    assert puller["access"] == [{"type": "repository", "name": "team/app", "actions": ["pull"]}]
    assert pusher["aud"] == LOGIN_SERVER


def test_docker_basic_auth_at_the_token_endpoint_gets_an_access_token(acr):
    # What the Docker engine sends when it holds the refresh token as the null GUID's password.
    refresh = exchange_login(LOGIN_SERVER, acr.credential(PUSHER)).password.get_secret_value()
    basic = base64.b64encode(f"{ACR_TOKEN_USER}:{refresh}".encode()).decode()
    with http(acr) as web:
        answer = web.get(
            f"https://{LOGIN_SERVER}/oauth2/token",
            params={"service": LOGIN_SERVER, "scope": "repository:team/app:pull"},
            headers={"Authorization": f"Basic {basic}"},
        )
        access = answer.json()["access_token"]
        base = web.get(f"https://{LOGIN_SERVER}/v2/", headers={"Authorization": f"Bearer {access}"})
    assert answer.status_code == 200
    assert base.status_code == 200


def test_docker_login_posts_the_refresh_token_as_the_null_users_password(acr):
    # `docker login` asks for a token with OAuth's password grant before it falls back to GET.
    refresh = exchange_login(LOGIN_SERVER, acr.credential(PUSHER)).password.get_secret_value()
    with http(acr) as web:
        answer = web.post(
            f"https://{LOGIN_SERVER}/oauth2/token",
            data={
                "grant_type": "password",
                "service": LOGIN_SERVER,
                "client_id": "docker",
                "access_type": "offline",
                "username": ACR_TOKEN_USER,
                "password": refresh,
            },
        )
        wrong = web.post(
            f"https://{LOGIN_SERVER}/oauth2/token",
            data={
                "grant_type": "password",
                "service": LOGIN_SERVER,
                "username": "someone",
                "password": refresh,
            },
        )
    assert answer.status_code == 200
    assert (
        jwt.decode(answer.json()["access_token"], options={"verify_signature": False})["access"]
        == []
    )
    assert wrong.status_code == 401


# -- push and pull through to the upstream ---------------------------------------------------------


def test_a_push_with_acrpush_lands_upstream_under_the_registrys_name(acr, repository):
    digest = push_image(acr.client(PUSHER), repository, "v1", "a")
    assert acr.upstream.tags(f"{REGISTRY}/{repository}") == ["v1"]
    assert acr.upstream.manifest_digest(f"{REGISTRY}/{repository}", "v1") == digest
    pulled = acr.client(PULLER).get_manifest(repository, "v1")
    assert pulled.digest == digest
    layer = pulled.manifest["layers"][0]["digest"]
    stream = acr.client(PULLER).download_blob(repository, layer)
    data = b"".join(stream)
    assert data == b"a" * 100
    assert "sha256:" + hashlib.sha256(data).hexdigest() == layer


def test_the_upstreams_errors_name_the_repository_as_the_client_does(acr, repository):
    access = _access_token(acr, _refresh(acr, PULLER), f"repository:{repository}:pull")
    with http(acr) as web:
        missing = web.get(
            f"https://{LOGIN_SERVER}/v2/{repository}/tags/list",
            headers={"Authorization": f"Bearer {access}"},
        )
    assert missing.status_code == 404
    [error] = missing.json()["errors"]
    assert error["code"] == "NAME_UNKNOWN"
    assert error["detail"] == {"name": repository}


def test_an_identity_without_acrpush_cannot_push(acr, repository):
    with pytest.raises(ClientAuthenticationError, match="authentication required"):
        push_image(acr.client(PULLER), repository, "v1", "b")
    assert not any(f"{REGISTRY}/{repository}" in r for r in _upstream_repositories(acr))


def test_tokens_of_one_registry_are_refused_by_another(acr):
    # The pusher may push to both registries; a token is still good for its own registry only.
    refresh = exchange_login(LOGIN_SERVER, acr.credential(PUSHER)).password.get_secret_value()
    access = _access_token(acr, refresh)
    with http(acr) as web:
        exchanged = web.post(
            f"https://{OTHER_LOGIN_SERVER}/oauth2/token",
            data={
                "grant_type": "refresh_token",
                "service": OTHER_LOGIN_SERVER,
                "scope": "repository:team/app:pull",
                "refresh_token": refresh,
            },
        )
        used = web.get(
            f"https://{OTHER_LOGIN_SERVER}/v2/team/app/tags/list",
            headers={"Authorization": f"Bearer {access}"},
        )
        at_home = web.get(
            f"https://{LOGIN_SERVER}/v2/team/app/tags/list",
            headers={"Authorization": f"Bearer {access}"},
        )
    assert exchanged.status_code == 401
    assert exchanged.json()["errors"][0]["code"] == "UNAUTHORIZED"
    assert used.status_code == 401
    assert f'service="{OTHER_LOGIN_SERVER}"' in used.headers["www-authenticate"]
    assert at_home.status_code == 404  # past the check: the repository does not exist


def test_two_registries_keep_their_images_apart(acr, repository):
    push_image(acr.client(PUSHER, OTHER_LOGIN_SERVER), repository, "v1", "c")
    assert acr.upstream.tags(f"{OTHER_REGISTRY}/{repository}") == ["v1"]
    with pytest.raises(UserError, match="does not exist"):
        list_tags(acr_client(LOGIN_SERVER, acr.credential(PUSHER)), repository)


def test_the_catalog_lists_this_registrys_repositories_only(acr, repository):
    push_image(acr.client(PUSHER, OTHER_LOGIN_SERVER), repository, "v1", "e")
    push_image(acr.client(PUSHER), f"{repository}-here", "v1", "e")
    access = token(acr, PULLER, "registry:catalog:*")
    assert access["access"] == [{"type": "registry", "name": "catalog", "actions": ["*"]}]
    refresh = exchange_login(LOGIN_SERVER, acr.credential(PULLER)).password.get_secret_value()
    with http(acr) as web:
        bearer = web.post(
            f"https://{LOGIN_SERVER}/oauth2/token",
            data={
                "grant_type": "refresh_token",
                "service": LOGIN_SERVER,
                "scope": "registry:catalog:*",
                "refresh_token": refresh,
            },
        ).json()["access_token"]
        listed = web.get(
            f"https://{LOGIN_SERVER}/v2/_catalog", headers={"Authorization": f"Bearer {bearer}"}
        )
    assert listed.status_code == 200
    assert f"{repository}-here" in listed.json()["repositories"]
    assert repository not in listed.json()["repositories"]
    assert not any(name.startswith(OTHER_REGISTRY) for name in listed.json()["repositories"])


def test_anonymous_pull_is_granted_only_where_the_registry_allows_it(acr, repository):
    digest = push_image(acr.client(PUSHER, OTHER_LOGIN_SERVER), repository, "v1", "f")
    anonymous = ContainerRegistryClient(f"https://{OTHER_LOGIN_SERVER}", None)
    assert anonymous.get_manifest(repository, "v1").digest == digest
    with pytest.raises(ClientAuthenticationError):
        push_image(anonymous, repository, "v2", "g")
    with pytest.raises(ClientAuthenticationError):
        ContainerRegistryClient(f"https://{LOGIN_SERVER}", None).get_manifest(repository, "v1")
    with http(acr) as web:  # the Docker engine's anonymous pull asks without credentials
        docker = web.get(
            f"https://{OTHER_LOGIN_SERVER}/oauth2/token",
            params={"service": OTHER_LOGIN_SERVER, "scope": f"repository:{repository}:pull"},
        )
        stranger = web.post(
            f"https://{OTHER_LOGIN_SERVER}/oauth2/token",
            data={
                "grant_type": "password",
                "service": OTHER_LOGIN_SERVER,
                "username": "someone",
                "password": "guess",
            },
        )
    granted = jwt.decode(docker.json()["access_token"], options={"verify_signature": False})
    assert granted["access"] == [{"type": "repository", "name": repository, "actions": ["pull"]}]
    assert stranger.status_code == 401


def test_an_unknown_registry_name_is_name_unknown(acr):
    with http(acr) as web:
        answer = web.get(f"https://{UNKNOWN_LOGIN_SERVER}/v2/")
    assert answer.status_code == 404
    assert answer.json()["errors"][0]["code"] == "NAME_UNKNOWN"


# -- the tag API our housekeeping uses -------------------------------------------------------------


def test_prune_deletes_old_tags_and_keeps_a_tag_that_shares_a_kept_digest(acr, repository):
    registry = acr.client(CLEANER)
    shared = push_image(registry, repository, "old-1", "x")
    push_image(registry, repository, "old-2", "y")
    push_image(registry, repository, "pinned", "z")
    push_image(registry, repository, "new-1", "w")
    assert push_image(registry, repository, "new-2", "x") == shared  # same image as old-1
    tags_client = acr_client(LOGIN_SERVER, acr.credential(CLEANER))
    pinned = acr.upstream.manifest_digest(f"{REGISTRY}/{repository}", "pinned")
    doomed = prune_plan(
        list_tags(tags_client, repository), keep=2, pinned_digest=pinned, pinned_tags=set()
    )
    assert sorted(t.name for t in doomed) == ["old-1", "old-2"]
    delete_tags(tags_client, repository, doomed)
    left = acr.upstream.tags(f"{REGISTRY}/{repository}")
    assert sorted(left) == ["new-1", "new-2", "pinned"]
    assert acr.upstream.manifest_digest(f"{REGISTRY}/{repository}", "new-2") == shared


def test_tags_come_in_pages_newest_first(acr, repository):
    registry = acr.client(PUSHER)
    for tag in ("t1", "t2", "t3", "t4", "t5"):
        push_image(registry, repository, tag, tag)
    pages = acr.client(PULLER).list_tag_properties(
        repository, order_by=ArtifactTagOrder.LAST_UPDATED_ON_DESCENDING, results_per_page=2
    )
    assert [[t.name for t in page] for page in pages.by_page()] == [
        ["t5", "t4"],
        ["t3", "t2"],
        ["t1"],
    ]


def test_deleting_a_tag_without_acrdelete_is_refused(acr, repository):
    push_image(acr.client(PUSHER), repository, "v1", "d")
    tags_client = acr_client(LOGIN_SERVER, acr.credential(PUSHER))
    [tag] = list_tags(tags_client, repository)
    with pytest.raises(UserError, match="needs AcrDelete"):
        delete_tags(tags_client, repository, [tag])
    assert acr.upstream.tags(f"{REGISTRY}/{repository}") == ["v1"]


def _upstream_repositories(acr: LocalAcr) -> list[str]:
    with httpx.Client() as web:
        return web.get(f"http://{acr.upstream.host}/v2/_catalog").json()["repositories"] or []


def _refresh(acr: LocalAcr, who) -> str:
    return exchange_login(LOGIN_SERVER, acr.credential(who)).password.get_secret_value()


def _access_token(acr: LocalAcr, refresh: str, scope: str = "repository:team/app:pull") -> str:
    with http(acr) as web:
        answer = web.post(
            f"https://{LOGIN_SERVER}/oauth2/token",
            data={
                "grant_type": "refresh_token",
                "service": LOGIN_SERVER,
                "scope": scope,
                "refresh_token": refresh,
            },
        )
    return answer.json()["access_token"]
