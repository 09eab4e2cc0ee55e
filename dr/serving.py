"""The runtime, seen from a runbook: failover health, champion pinning (admin API) and a real
inference through tritonclient against a region's serving endpoint.

Health and pinning take a base URL or an `Exchange` (one HTTP request and its answer over another
transport: kube_portforward.py sends the same requests through a Kubernetes port-forward)."""
from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from typing import Callable
from urllib.parse import urlsplit

import numpy as np

from mlfleet.dr.errors import DrUsageError


class ServingError(Exception):
    def __init__(self, message: str, status_code: int | None = None):
        self.status_code = status_code
        super().__init__(message)


Exchange = Callable[[str, str, dict[str, str], bytes | None, float], tuple[int, bytes]]
"""One HTTP exchange: (method, path, headers, body, timeout) -> (status, response body). A transport
other than a URL (a Kubernetes port-forward) passes one of these where a base URL goes."""


def url_exchange(base_url: str) -> Exchange:
    """Exchanges with the server at `base_url` (http or https) through urllib."""
    def exchange(method: str, path: str, headers: dict[str, str], data: bytes | None,
                 timeout: float) -> tuple[int, bytes]:
        url = base_url + path
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:
            raise ConnectionError(f"{url}: {getattr(exc, 'reason', exc)}") from None

    return exchange


def socket_exchange(sock, *, authority: str, where: str) -> Exchange:
    """One exchange over an already connected stream socket (plain HTTP/1.1; `authority` is the Host
    header). The socket is closed afterwards: one request per connection."""
    def exchange(method: str, path: str, headers: dict[str, str], data: bytes | None,
                 timeout: float) -> tuple[int, bytes]:
        host, _, port = authority.rpartition(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
        connection.sock = sock  # http.client connects only when it has no socket
        sock.settimeout(timeout)
        try:
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        except (http.client.HTTPException, OSError) as exc:
            raise ConnectionError(f"{where}: {exc or type(exc).__name__}") from None
        finally:
            connection.close()

    return exchange


def _request(endpoint: "str | Exchange", path: str, *, method: str = "GET", body: dict | None = None,
             token: str | None = None, timeout: float = 5.0) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    exchange = endpoint if callable(endpoint) else url_exchange(endpoint)
    status, raw = exchange(method, path, headers, data, timeout)
    try:
        document = json.loads(raw or b"{}")
    except ValueError:
        document = {}
    return status, document if isinstance(document, dict) else {}


def failover_health(base_url: "str | Exchange", path: str, timeout: float = 2.0) -> tuple[bool, str]:
    """(healthy, detail): healthy only on 200 with the failover token in the body. The detail names
    the reasons where the runtime gives them: its management listener (a port-forward `Exchange`) and
    a runtime without one (the sandbox); its public listener answers only FAILING."""
    try:
        status, document = _request(base_url, path, timeout=timeout)
    except ConnectionError as exc:
        return False, str(exc)
    if status == 200 and "MLFLEET_FAILOVER_OK" in json.dumps(document):
        return True, "failover-healthy"
    reasons = document.get("reasons")
    if isinstance(reasons, list) and reasons:
        return False, f"HTTP {status}: {', '.join(map(str, reasons))}"
    if document.get("status") == "FAILING":
        return False, f"HTTP {status}: failing (details on the management port)"
    return False, f"HTTP {status}: {document.get('error', 'not healthy')}"


def current_pin(base_url: "str | Exchange", model: str) -> str | None:
    """The version `model` is pinned to; `base_url` is a runtime's URL or an `Exchange` with it."""
    status, document = _request(base_url, f"/v2/mlfleet/models/{model}/pin")
    if status != 200:
        raise ServingError(f"GET pin of {model}: HTTP {status} {document.get('error', '')}", status)
    return document.get("version")


def pin(base_url: "str | Exchange", model: str, version: str, token: str | None, *,
        reload_manifest: bool = True) -> dict:
    if not token:
        raise DrUsageError("pinning a model needs the runtime's admin token: set MLFLEET_ADMIN_TOKEN")
    status, document = _request(base_url, f"/v2/mlfleet/models/{model}/pin", method="POST", token=token,
                                body={"version": version, "reload_manifest": reload_manifest}, timeout=30)
    if status != 200:
        raise ServingError(f"pin {model} v{version}: HTTP {status} {document.get('error', '')}", status)
    return document


def infer(base_url: str, model: str, *, timeout: float = 5.0) -> dict:
    """One real inference with tritonclient, shaped from the model's own metadata."""
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    parsed = urlsplit(base_url)
    client = triton.InferenceServerClient(url=parsed.netloc, ssl=parsed.scheme == "https",
                                          connection_timeout=timeout, network_timeout=timeout)
    try:
        metadata = client.get_model_metadata(model)
        inputs = []
        for spec in metadata["inputs"]:
            shape = [1 if d < 0 else d for d in spec["shape"]]
            tensor = triton.InferInput(spec["name"], shape, spec["datatype"])
            tensor.set_data_from_numpy(np.zeros(shape, dtype=_numpy_type(spec["datatype"])))
            inputs.append(tensor)
        result = client.infer(model, inputs)
        response = result.get_response()
        return {"model": response.get("model_name", model), "version": response.get("model_version"),
                "outputs": [o["name"] for o in response.get("outputs", [])]}
    except InferenceServerException as exc:
        raise ServingError(f"inference on {model} at {base_url}: {exc.message()}", _status(exc)) from None
    finally:
        client.close()


def _status(exc) -> int | None:
    try:
        return int(exc.status())
    except (TypeError, ValueError):
        return None


def _numpy_type(datatype: str):
    from tritonclient.utils import triton_to_np_dtype

    return triton_to_np_dtype(datatype)
