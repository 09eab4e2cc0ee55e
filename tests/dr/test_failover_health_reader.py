"""What the DR tooling makes of failover health on each runtime listener: the reasons where the
full document is served (management, or the one listener of a runtime without one), a plain
"failing" pointing to the management port where the public listener redacts them."""
from __future__ import annotations

import asyncio

import pytest

from mlfleet.dr import serving
from mlfleet.runtime.data_plane import DataPlane
from mlfleet.runtime.http_app import Listener, RestApp
from mlfleet.runtime.manager import ModelManager
from mlfleet.runtime.metrics import Metrics
from mlfleet.runtime.sources import LocalSource

PATH = "/v2/health/failover"


@pytest.fixture
def plane(tmp_path, manifest_key) -> DataPlane:
    """A data plane whose manifest is not loaded yet: failover health fails, with a reason."""
    manager = ModelManager(LocalSource(tmp_path), Metrics(), manifest_public_key=manifest_key.signing_key.public_key)
    return DataPlane(manager, Metrics(), region="eu-west-1")


def _in_process(app: RestApp) -> serving.Exchange:
    """An Exchange answered by `app` itself: the listener's real handler, without a socket."""
    def exchange(method: str, path: str, headers: dict[str, str], data: bytes | None,
                 timeout: float) -> tuple[int, bytes]:
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": data or b"", "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "method": method, "path": path,
                 "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
        asyncio.run(app(scope, receive, send))
        return sent[0]["status"], sent[1]["body"]

    return exchange


@pytest.mark.parametrize("listener, detail", [
    (Listener.PUBLIC, "HTTP 503: failing (details on the management port)"),
    (Listener.MANAGEMENT, "HTTP 503: manifest not loaded"),
    (Listener.COMBINED, "HTTP 503: manifest not loaded"),
])
def test_the_detail_is_the_reasons_where_the_listener_serves_them(plane, listener, detail):
    assert serving.failover_health(_in_process(RestApp(plane, listener=listener)), PATH) == (False, detail)

