"""Pinning through the Kubernetes API's port-forward: the runtime serves its management calls only
on port 8002 of the pod's loopback (`--management-port`), so nothing but the API server's
`pods/portforward` reaches it. For each Running and Ready runtime pod of a region (label
`app.kubernetes.io/name=mlfleet-runtime` in namespace `mlfleet`) the official client opens a
port-forward (`kubernetes.stream.portforward` on `connect_get_namespaced_pod_portforward`, the
`v4.channel.k8s.io` websocket protocol) and sends dr/serving.py's request over the forwarded socket.

The admin token is MLFLEET_ADMIN_TOKEN when set (the target's `admin_token`), else the `token` key of
the `mlfleet-runtime-admin` Secret, read through the API (RBAC: `secrets` get in `mlfleet`).

Errors, for the engine's retry classification: the handshake's HTTP status becomes a
`KubeApiError` (401/403/404 permanent, 5xx transient), a connection that fails or drops a
`ConnectionError` (transient), an error the kubelet writes on the port's error channel (nothing
listens on that port in the pod) a `PortForwardError` (permanent). Every failure names its pod.
"""
from __future__ import annotations

import base64
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator

from mlfleet.dr import kube, serving
from mlfleet.dr.engine import RunContext, StepFailed
from mlfleet.dr.errors import DrUsageError
from mlfleet.dr.retry import GaveUp
from mlfleet.stacks.environment import naming

if TYPE_CHECKING:
    from mlfleet.dr.target import Target

MANAGEMENT_PORT = 8002
"""ServingDeployment's `management_port` default: the runtime's management listener in the pod."""
RUNTIME_SELECTOR = "app.kubernetes.io/name=mlfleet-runtime"
"""Every runtime pod of a region, whatever its serving pool (ServingDeployment's selector labels)."""
ADMIN_SECRET, ADMIN_SECRET_KEY = "mlfleet-runtime-admin", "token"
"""ServingDeployment's `admin_token_secret` default and its key; created out of band."""
ERROR_WAIT_S = 0.5
"""How long a dropped forward waits for the kubelet's reason on the error channel."""
_HANDSHAKE_STATUS = re.compile(r"Handshake status (\d{3})")


class PortForwardError(Exception):
    """The kubelet reported an error on the port's error channel (nothing listens there)."""


@dataclass(frozen=True)
class RuntimePod:
    name: str
    ready: bool
    detail: str
    """Why it is skipped ("Pending", "not Ready: ..."); "" for a Running and Ready pod."""


@dataclass
class RegionPin:
    """What pinning one model in a region did, pod by pod."""
    pinned: list[str] = field(default_factory=list)
    """Pods whose pin changed."""
    unchanged: list[str] = field(default_factory=list)
    """Pods already at the version (a resumed step finds its work done)."""
    skipped: list[str] = field(default_factory=list)
    """Pods that are not Running and Ready, with the reason: not pinned, reported."""

    def summary(self, model: str, version: str) -> str:
        line = f"{model} v{version} on {len(self.pinned) + len(self.unchanged)} pod(s)"
        return line + (f" (skipped {', '.join(self.skipped)})" if self.skipped else "")


# -- pods and the token ------------------------------------------------------------------------
def runtime_pods(target: "Target", region: str) -> list[RuntimePod]:
    """The region's runtime pods, each with whether it is Running and Ready."""
    api = kube.core_api(target, region)
    listed = kube.call(target, api.list_namespaced_pod, naming.serving_namespace(), label_selector=RUNTIME_SELECTOR)
    pods = []
    for pod in listed.items:
        phase = (pod.status.phase if pod.status else None) or "Unknown"
        conditions = {c.type: c for c in (pod.status.conditions or [])} if pod.status else {}
        ready = conditions.get("Ready")
        if phase != "Running":
            detail = phase
        elif ready is None or ready.status != "True":
            detail = "not Ready" + (f": {ready.message or ready.reason}" if ready and (ready.message or ready.reason)
                                    else "")
        else:
            detail = ""
        pods.append(RuntimePod(pod.metadata.name, ready=not detail, detail=detail))
    return sorted(pods, key=lambda p: p.name)


def admin_token(target: "Target", ctx: RunContext, region: str) -> str:
    """MLFLEET_ADMIN_TOKEN (the target's `admin_token`), else the Secret's `token` key."""
    if target.admin_token:
        return target.admin_token
    api = kube.core_api(target, region)
    namespace = naming.serving_namespace()
    try:
        secret = ctx.call(f"read Secret {namespace}/{ADMIN_SECRET} in {region}", kube.call, target,
                          api.read_namespaced_secret, ADMIN_SECRET, namespace)
    except GaveUp as exc:
        if isinstance(exc.cause, kube.KubeApiError) and exc.cause.status_code in (403, 404):
            raise DrUsageError(f"no runtime admin token for {region}: {exc}; create the Secret (key "
                               f"{ADMIN_SECRET_KEY!r}) or set MLFLEET_ADMIN_TOKEN") from None
        raise
    encoded = (secret.data or {}).get(ADMIN_SECRET_KEY)
    if not encoded:
        raise DrUsageError(f"Secret {namespace}/{ADMIN_SECRET} in {region} has no {ADMIN_SECRET_KEY!r} key; "
                           "pinning is disabled without it")
    return base64.b64decode(encoded).decode().strip()


# -- the forward -------------------------------------------------------------------------------
@contextmanager
def forwarded(target: "Target", region: str, pod: str, port: int = MANAGEMENT_PORT) -> Iterator:
    """A `kubernetes.stream.ws_client.PortForward` to `port` of `pod`, closed afterwards."""
    import websocket  # websocket-client, the kubernetes client's websocket library
    from kubernetes.client.exceptions import ApiException
    from kubernetes.stream import portforward

    api = kube.core_api(target, region)
    # The client passes no timeout to the websocket handshake: only websocket-client's module
    # default reaches it, so it is set for this connect (the proxy thread selects before it reads).
    previous = websocket.getdefaulttimeout()
    websocket.setdefaulttimeout(target.connect_timeout_s + target.read_timeout_s)
    try:
        forward = portforward(api.connect_get_namespaced_pod_portforward, pod, naming.serving_namespace(),
                              ports=str(port))
    except (ApiException, AttributeError) as exc:
        # The websocket client reports every failure as an ApiException with status 0 and no body,
        # which the generated call_api then fails to decode: it arrives as an AttributeError's context.
        cause = exc if isinstance(exc, ApiException) else exc.__context__
        if not isinstance(cause, ApiException):
            raise
        reason = str(cause.reason or cause)
        status = _HANDSHAKE_STATUS.search(reason)
        if status:
            raise kube.KubeApiError(int(status.group(1)), f"port-forward to {pod}:{port} refused "
                                    f"({reason.split(' -+-+- ', 1)[0]})") from None
        raise ConnectionError(f"port-forward to {pod}:{port}: {reason}") from None
    finally:
        websocket.setdefaulttimeout(previous)
    try:
        yield forward
    finally:
        forward.close()


def exchange(target: "Target", region: str, pod: str, port: int = MANAGEMENT_PORT) -> serving.Exchange:
    """A `serving.Exchange` that sends each request through its own port-forward to `pod`."""
    def send(method: str, path: str, headers: dict[str, str], data: bytes | None,
             timeout: float) -> tuple[int, bytes]:
        with forwarded(target, region, pod, port) as forward:
            http = serving.socket_exchange(forward.socket(port), authority=f"127.0.0.1:{port}",
                                           where=f"port-forward to {pod}:{port}")
            try:
                return http(method, path, headers, data, timeout)
            except ConnectionError:
                error = _error(forward, port)
                if error:
                    raise PortForwardError(f"port-forward to {pod}:{port}: {error}") from None
                raise

    return send


def _error(forward, port: int) -> str | None:
    """The error channel's text; the proxy thread may still be reading it when the socket drops."""
    deadline = time.monotonic() + ERROR_WAIT_S
    while forward.error(port) is None and forward.connected and time.monotonic() < deadline:
        time.sleep(0.01)
    return forward.error(port)


# -- pinning -----------------------------------------------------------------------------------
def current_pins(target: "Target", ctx: RunContext, region: str, model: str) -> dict[str, str | None]:
    """Pod -> the version `model` is pinned to, for every Running and Ready runtime pod."""
    pods = ctx.call(f"list runtime pods in {region}", runtime_pods, target, region)
    found = {}
    for pod in (p for p in pods if p.ready):
        found[pod.name] = _on_pod(pod.name, region, ctx.call, f"read pin of {model} on {pod.name}",
                                  serving.current_pin, exchange(target, region, pod.name), model)
    return found


def pin_region(target: "Target", ctx: RunContext, region: str, model: str, version: str) -> RegionPin:
    """Pin `model` to `version` on every Running and Ready runtime pod of `region` (each must answer
    200); pods that are not ready are skipped and reported. Idempotent: a pod at the version is left."""
    token = admin_token(target, ctx, region)
    pods = ctx.call(f"list runtime pods in {region}", runtime_pods, target, region)
    result = RegionPin(skipped=[f"{p.name} ({p.detail})" for p in pods if not p.ready])
    ready = [p.name for p in pods if p.ready]
    if not ready:
        raise StepFailed(f"no Running and Ready runtime pod in {region} to pin {model} v{version} on"
                         + (f" (found {', '.join(result.skipped)})" if result.skipped else ""))
    for name in ready:
        via = exchange(target, region, name)
        have = _on_pod(name, region, ctx.call, f"read pin of {model} on {name}", serving.current_pin, via, model)
        if have == version:
            result.unchanged.append(name)
            continue
        _on_pod(name, region, ctx.call, f"pin {model} v{version} on {name}", serving.pin, via, model, version, token)
        result.pinned.append(name)
    return result


def _on_pod(pod: str, region: str, call, *args):
    """`call(*args)` against one pod; its failure fails the step and names the pod."""
    try:
        return call(*args)
    except DrUsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of one pod fails the step, with its name
        raise StepFailed(f"runtime pod {pod} in {region}: {exc}") from None
