"""`prefect server start` from the image answers /api/health (the local stack depends on it).

The `prefect_server` fixture starts it from our image on a loopback port, waits for it, and fails
with the server's log if it never answers."""

import json
import urllib.request


def test_prefect_server_from_the_image_answers_health(prefect_server):
    with urllib.request.urlopen(f"{prefect_server}/health", timeout=10) as response:  # noqa: S310
        assert (response.status, json.loads(response.read())) == (200, True)
