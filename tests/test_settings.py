"""Settings: product names share the PREFECT_ACI_ prefix, standard names keep their own, and a
.env that still has an old name is told the new one."""

import pytest

from arm.settings import InfraSettings
from image_builder.settings import ImageSettings
from prefect_aci.core import settings as core_settings
from prefect_aci.core.errors import UserError
from prefect_aci.core.settings import load

AZURE = {
    "AZURE_SUBSCRIPTION_ID": "0b1f6471-1bf0-4dda-aec3-cb9272f09590",
    "AZURE_RESOURCE_GROUP": "rg",
    "PREFECT_API_URL": "http://127.0.0.1:4200/api",
    "PREFECT_API_KEY": "k",
    "PREFECT_API_AUTH_STRING": "",
}


@pytest.fixture
def clean(monkeypatch, tmp_path):
    """No settings from this machine, and a .env of the test's own."""
    for name in [*AZURE, *core_settings.RENAMED, *core_settings.RENAMED.values()]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(core_settings, "_warned", set())
    return tmp_path


def test_product_settings_are_read_under_the_prefix_and_standard_names_as_they_are(
    clean, monkeypatch
):
    for name, value in AZURE.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PREFECT_ACI_PREFIX", "team")
    settings = load(InfraSettings)
    assert settings.prefix == "team"
    assert settings.azure_resource_group == "rg"


def test_an_unprefixed_name_in_the_environment_is_another_tools(clean, monkeypatch):
    for name, value in AZURE.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PREFIX", "/usr/local")  # what autotools and Termux mean by it
    assert load(InfraSettings).prefix == "prefect"


def test_an_old_name_in_dotenv_gets_one_line_naming_the_new_one(clean, monkeypatch, capsys):
    for name, value in AZURE.items():
        monkeypatch.setenv(name, value)
    (clean / ".env").write_text("WORKER_CPU=2\nBASE_IMAGE=python:3.13-slim-bookworm\n")
    assert load(InfraSettings).worker_cpu == "2"
    assert load(ImageSettings).base_image == "python:3.13-slim-bookworm"
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert any("WORKER_CPU, which is now PREFECT_ACI_WORKER_CPU" in w for w in warnings)
    assert any("BASE_IMAGE, which is now PREFECT_ACI_BASE_IMAGE" in w for w in warnings)
    assert len(warnings) == 2


def test_the_new_name_wins_over_an_old_one(clean, monkeypatch):
    for name, value in AZURE.items():
        monkeypatch.setenv(name, value)
    (clean / ".env").write_text("WORKER_CPU=2\nPREFECT_ACI_WORKER_CPU=4\n")
    assert load(InfraSettings).worker_cpu == "4"


def test_a_bad_value_is_named_by_the_variable_the_user_sets(clean, monkeypatch):
    for name, value in AZURE.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PREFECT_ACI_WORKER_MEMORY_GB", "0")
    monkeypatch.delenv("AZURE_RESOURCE_GROUP")
    with pytest.raises(UserError) as caught:
        load(InfraSettings)
    assert "AZURE_RESOURCE_GROUP is not set" in str(caught.value)
    assert "PREFECT_ACI_WORKER_MEMORY_GB must be a positive number" in str(caught.value)


@pytest.mark.parametrize(
    ("url", "allow", "refused"),
    [
        ("http://10.0.0.4:4200/api", None, "PREFECT_API_URL must be https://"),
        ("http://prefect.internal/api", None, "PREFECT_ACI_ALLOW_HTTP_API_URL=true"),
        ("http://10.0.0.4:4200/api", "true", None),
        ("http://127.0.0.1:4200/api", None, None),
        ("http://localhost:4200/api", None, None),
        ("https://prefect.example.com/api", None, None),
    ],
)
def test_the_worker_gets_the_prefect_api_over_https_except_on_loopback(
    clean, monkeypatch, url, allow, refused
):
    """The worker's key or auth string goes with every call: never in clear across a network
    unless the user says so."""
    for name, value in {**AZURE, "PREFECT_API_URL": url}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PREFECT_ACI_ALLOW_HTTP_API_URL", raising=False)
    if allow:
        monkeypatch.setenv("PREFECT_ACI_ALLOW_HTTP_API_URL", allow)
    if refused is None:
        assert load(InfraSettings).prefect_api_url == url.rstrip("/")
        return
    with pytest.raises(UserError) as caught:
        load(InfraSettings)
    assert refused in str(caught.value)
    assert not str(caught.value).startswith("settings ")  # the line names what to set


def test_prefect_cloud_needs_a_key_and_a_server_may_take_an_auth_string(clean, monkeypatch):
    cloud = "https://api.prefect.cloud/api/accounts/a/workspaces/w"
    for name, value in {**AZURE, "PREFECT_API_URL": cloud}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PREFECT_API_KEY")
    with pytest.raises(UserError, match="PREFECT_API_KEY is not set: Prefect Cloud needs"):
        load(InfraSettings)
    monkeypatch.setenv("PREFECT_API_URL", "https://prefect.example.com/api")
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "admin:pass")
    settings = load(InfraSettings)
    assert settings.prefect_api_key is None
    assert settings.prefect_api_auth_string.get_secret_value() == "admin:pass"


def test_the_sweep_sends_its_credentials_over_https_too(clean, monkeypatch):
    from arm.settings import SweepSettings

    for name, value in {**AZURE, "PREFECT_API_URL": "http://prefect.internal/api"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(UserError, match=r"PREFECT_API_URL must be https://.*the sweep sends"):
        load(SweepSettings)
    monkeypatch.setenv("PREFECT_ACI_ALLOW_HTTP_API_URL", "true")
    assert load(SweepSettings).prefect_api_url == "http://prefect.internal/api"
