"""How a failed call to the Prefect API reads, the same for every command that makes one."""

import contextlib
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx

from prefect_aci.core.errors import UserError, first_line


def _api_url() -> str:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or "(PREFECT_API_URL unset)"


@contextlib.contextmanager
def prefect_api_errors(consequence: str = "") -> Iterator[None]:
    """Turn the Prefect client's HTTP failures into one line that says what to set; other errors
    (a bug, a full disk) pass through as they are. ``consequence`` ends the line (e.g. "nothing
    was deleted")."""
    tail = f"; {consequence}" if consequence else ""
    try:
        yield
    except httpx.HTTPStatusError as exc:
        status = exc.response.status_code
        hint = (
            "set PREFECT_API_KEY (Prefect Cloud) or PREFECT_API_AUTH_STRING"
            if status in (401, 403)
            else "check PREFECT_API_URL"
        )
        raise UserError(
            f"the Prefect API at {_api_url()} answered {status}; {hint}{tail}"
        ) from None
    except (httpx.TransportError, ConnectionError) as exc:
        raise UserError(
            f"cannot reach the Prefect API at {_api_url()} ({type(exc).__name__}: "
            f"{first_line(exc)}); set PREFECT_API_URL (and PREFECT_API_KEY for Prefect Cloud)"
            f"{tail}"
        ) from None


def client_settings(url: str, api_key=None, auth_string=None) -> dict:
    """Prefect's client settings for the API at ``url``, with its key (Prefect Cloud) or basic-auth
    string (a self-hosted server) when given (pydantic SecretStr values)."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_KEY, PREFECT_API_URL

    updates = {PREFECT_API_URL: url}
    if api_key:
        updates[PREFECT_API_KEY] = api_key.get_secret_value()
    if auth_string:
        updates[PREFECT_API_AUTH_STRING] = auth_string.get_secret_value()
    return updates


# Hosts a plain-http Prefect API may be on: this machine's own (nothing crosses a network).
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
PREFECT_CLOUD_HOST = "api.prefect.cloud"


def prefect_api_refusal(
    url: str, allow_http: bool, has_key: bool, sender: str = "the worker"
) -> str | None:
    """Why ``sender`` must not be given the Prefect API at ``url`` (None when it may): its key
    or auth string travels with every call, so plain http only on loopback unless the user says
    so, and Prefect Cloud only with a key."""
    host = urlsplit(url).hostname or ""
    if url.startswith("http://") and host not in LOOPBACK_HOSTS and not allow_http:
        return (
            f"PREFECT_API_URL must be https:// ({sender} sends its API key or auth string with "
            f"every call); got {url!r}. Put the server behind TLS, or set "
            "PREFECT_ACI_ALLOW_HTTP_API_URL=true for a server on a network you trust"
        )
    if host == PREFECT_CLOUD_HOST and not has_key:
        return "PREFECT_API_KEY is not set: Prefect Cloud needs an API key (Cloud > API keys)"
    return None
