"""Uploading flow code through azure-storage-blob's own client and transport to a local endpoint
that answers as Blob storage does while a new role assignment has not reached it yet."""

import pytest
from azure.storage.blob import ContainerClient

from flows.deployment import FLOWS_DIR, upload_flow_code
from prefect_aci.core.errors import UserError
from tests.redirect import RedirectTransport
from tests.stand_ins import Answer, Request, StandIn

ACCOUNT = "https://prefectst1.blob.core.windows.net"


class BlobEndpoint(StandIn):
    """Answers PUT blob with 403 AuthorizationPermissionMismatch ``refusals`` times, then 201."""

    def __init__(self, refusals: int, code: str = "AuthorizationPermissionMismatch", status=403):
        self.refusals = refusals
        self.code = code
        self.status = status
        super().__init__()

    @property
    def puts(self) -> list[str]:
        return [r.path for r in self.received if r.method == "PUT"]

    def answer(self, request: Request) -> Answer:
        if request.method != "PUT":
            return Answer(405)
        if self.refusals <= 0:
            return Answer(201, headers={"ETag": '"0x1"'})
        self.refusals -= 1
        body = (
            f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{self.code}</Code>'
            "<Message>This request is not authorized.</Message></Error>"
        ).encode()
        return Answer(
            self.status,
            body,
            {"x-ms-error-code": self.code, "Content-Type": "application/xml"},
        )

    def container(self) -> ContainerClient:
        return ContainerClient(ACCOUNT, "flow-code", transport=RedirectTransport(ACCOUNT, self.url))


@pytest.fixture
def endpoint(request):
    stand_in = BlobEndpoint(*request.param)
    yield stand_in
    stand_in.close()


@pytest.mark.parametrize("endpoint", [(2,)], indirect=True)
def test_upload_waits_while_the_role_assignment_propagates(endpoint):
    said: list[str] = []
    uploaded = upload_flow_code(
        endpoint.container(), wait_for_access=30, retry_every=0.1, echo=said.append
    )
    files = sorted(p.name for p in (FLOWS_DIR / "key_vault_demo").glob("*.py"))
    assert "flow.py" in files
    assert uploaded == [f"key_vault_demo/{name}" for name in files]
    assert len(said) == 2 and all("role assignment" in line for line in said)
    # The first blob is refused twice, then every blob goes up once.
    puts = [f"/flow-code/key_vault_demo/{name}" for name in files]
    assert endpoint.puts == [puts[0], puts[0], *puts]


@pytest.mark.parametrize("endpoint", [(1000,)], indirect=True)
def test_upload_gives_up_with_what_to_do(endpoint):
    with pytest.raises(UserError, match="needs Storage Blob Data Contributor on the container"):
        upload_flow_code(endpoint.container(), wait_for_access=0.3, retry_every=0.1, echo=print)


@pytest.mark.parametrize("endpoint", [(1000, "ContainerNotFound", 404)], indirect=True)
def test_other_refusals_are_not_retried(endpoint):
    with pytest.raises(UserError, match="HTTP 404 ContainerNotFound"):
        upload_flow_code(endpoint.container(), wait_for_access=30, retry_every=0.1)
    assert len(endpoint.puts) == 1
