"""`prefect server start` from the image: the local stack runs it, so it must answer Prefect's API
(Prefect's own client writes and reads through it) and serve the UI with its settings endpoint,
where the UI learns its API's address."""

import json
import urllib.request

from prefect import get_client
from prefect.client.schemas.actions import VariableCreate
from prefect.settings import PREFECT_API_URL, temporary_settings


def test_prefect_client_writes_and_reads_through_the_server(prefect_server):
    with (
        temporary_settings({PREFECT_API_URL: prefect_server}),
        get_client(sync_client=True) as client,
    ):
        client.create_variable(VariableCreate(name="server_from_image_test", value="answered"))
        assert client.read_variable_by_name("server_from_image_test").value == "answered"
        client.delete_variable_by_name("server_from_image_test")


def test_server_serves_the_ui_and_its_settings(prefect_server):
    ui = prefect_server.removesuffix("/api")
    with urllib.request.urlopen(f"{ui}/", timeout=10) as response:  # noqa: S310 (loopback)
        page = response.read().decode()
    assert response.headers["Content-Type"].startswith("text/html")
    assert "<script" in page and "Prefect" in page
    with urllib.request.urlopen(f"{ui}/ui-settings", timeout=10) as response:  # noqa: S310
        settings = json.loads(response.read())
    assert settings["api_url"].endswith("/api")
