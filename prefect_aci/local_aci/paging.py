"""Azure's paged lists: a list answers `{"value": [...], "nextLink": ...}`, at most a page of
items, with `nextLink` (an absolute URL, the list's own with a `$skiptoken`) while more remain
(the REST specs' `x-ms-pageable` with `nextLinkName: nextLink`, as in
ContainerGroups_ListByResourceGroup and Deployments_ListByResourceGroup). The SDKs' pagers follow
nextLink until a page has none.

The token is opaque, as Azure's is: here the sort key of the first item of the next page, in
URL-safe base64 without padding (the SDK pagers quote each query value again; these characters
come through unchanged). An item deleted between two pages moves nothing: the next page starts at
the first key not below the token's.
"""

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from prefect_aci.local_aci.resource_manager import ArmError

SKIP_TOKEN = "$skiptoken"  # noqa: S105 (a query parameter's name)


def _token(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def _key(token: str) -> str | None:
    """The key a token names, or None for one this list never handed out."""
    try:
        padded = token + "=" * (-len(token) % 4)
        return base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


@dataclass(frozen=True)
class Pager:
    """The pages of one list request: ``url`` the list's absolute URL without its query,
    ``query`` the request's query, ``size`` the most items a page holds."""

    url: str
    query: Mapping[str, str]
    size: int

    def page(self, entries: Iterable[tuple[str, dict]]) -> dict:
        """The page the request asks for of ``entries`` (sort key, item)."""
        ordered = sorted(entries, key=lambda entry: entry[0])
        token = self.query.get(SKIP_TOKEN)
        if token is not None:
            start = _key(token)
            if start is None:
                # A local code: Azure's answer to a token it never gave was not confirmed.
                raise ArmError(
                    400, "InvalidSkipToken", f"The {SKIP_TOKEN} '{token}' is not valid here."
                )
            ordered = [entry for entry in ordered if entry[0] >= start]
        size = max(int(self.size), 1)
        body: dict = {"value": [item for _, item in ordered[:size]]}
        if len(ordered) > size:
            query = {k: v for k, v in self.query.items() if k != SKIP_TOKEN}
            query[SKIP_TOKEN] = _token(ordered[size][0])
            body["nextLink"] = f"{self.url}?{urlencode(query)}"
        return body
