"""The runtime's Deployments, through the official `kubernetes` client: read their scale and
readiness, patch their scale subresource. One Deployment per serving pool
(`naming.runtime_deployment(pool)` in `naming.serving_namespace()`).

Where the API server is:
- sandbox: the fake Kubernetes endpoint of the sandbox state, one `host` per region;
- AWS: the region's EKS cluster (`describe_cluster`: endpoint and CA), authenticated with the
  bearer token `aws eks get-token` makes (see `eks_token`), refreshed before it expires.

Errors are translated for the engine's retry classification: an API error keeps its HTTP
status (`KubeApiError.status_code`: 5xx and 429 transient, other 4xx not), a connection that
fails or drops is a `ConnectionError` (transient). The client itself never retries.
"""
from __future__ import annotations

import base64
import tempfile
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from mlfleet.dr.engine import RunContext
from mlfleet.stacks.environment import naming

if TYPE_CHECKING:
    from mlfleet.dr.target import Target

TOKEN_PREFIX = "k8s-aws-v1."
TOKEN_TTL_S = 60
"""The presigned URL's X-Amz-Expires; EKS accepts a token for 15 minutes, and the client makes a
new one after `TOKEN_REFRESH_S`."""
TOKEN_REFRESH_S = 600
PATCH_TYPE = "application/merge-patch+json"


class KubeApiError(Exception):
    """The API server answered with an error status (a Kubernetes `Status` object)."""

    def __init__(self, status_code: int, message: str):
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code


@dataclass(frozen=True)
class Replicas:
    desired: int
    """spec.replicas of the scale subresource"""
    ready: int
    """status.readyReplicas of the Deployment (pods that pass readiness: model loaded)"""


# -- the EKS bearer token -------------------------------------------------------------------
def eks_token(credentials, region: str, cluster: str) -> str:
    """What `aws eks get-token` prints: a presigned STS GetCallerIdentity URL whose signature
    covers the `x-k8s-aws-id: <cluster>` header, base64url without padding, prefixed
    `k8s-aws-v1.`. EKS replays the URL to learn the caller's identity."""
    from botocore.hooks import HierarchicalEmitter
    from botocore.model import ServiceId
    from botocore.signers import RequestSigner

    events = HierarchicalEmitter()  # held here: the signer keeps only a weak reference
    signer = RequestSigner(ServiceId("sts"), region, "sts", "v4", credentials, events)
    url = signer.generate_presigned_url(
        {"method": "GET", "url": f"https://sts.{region}.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15",
         "body": {}, "headers": {"x-k8s-aws-id": cluster}, "context": {}},
        region_name=region, expires_in=TOKEN_TTL_S, operation_name="")
    return TOKEN_PREFIX + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


def eks_configuration(eks, credentials: Callable[[], object], region: str, cluster: str):
    """A client Configuration for an EKS cluster: its endpoint, its CA (written to a private
    temporary file: the client takes a path), a bearer token refreshed before it expires."""
    from kubernetes.client import Configuration  # the client ships no types

    described = eks.describe_cluster(name=cluster)["cluster"]
    ca = tempfile.NamedTemporaryFile(prefix=f"{cluster}-ca-", suffix=".pem", delete=False)  # mode 0600
    with ca:
        ca.write(base64.b64decode(described["certificateAuthority"]["data"]))
    config = Configuration(host=described["endpoint"], ssl_ca_cert=ca.name)
    config.api_key_prefix["BearerToken"] = "Bearer"
    made = {"at": -float(TOKEN_REFRESH_S)}

    def refresh(conf) -> None:
        if time.monotonic() - made["at"] >= TOKEN_REFRESH_S:
            conf.api_key["BearerToken"] = eks_token(credentials(), region, cluster)
            made["at"] = time.monotonic()

    refresh(config)  # the client asks the hook only once a token is there
    config.refresh_api_key_hook = refresh
    return config


# -- clients ------------------------------------------------------------------------------
def configuration(target: "Target", region: str):
    """The client Configuration of the region's cluster, cached on the target like its boto3 clients
    (one per region, shared by the API groups: its EKS token is refreshed in one place)."""
    def build():
        from kubernetes.client import Configuration

        if target.kind == "sandbox":
            if region not in target.kube_hosts:
                raise KubeApiError(404, f"the sandbox has no Kubernetes API for {region}")
            config = Configuration(host=target.kube_hosts[region])
            config.api_key["BearerToken"] = target.kube_token or ""
            config.api_key_prefix["BearerToken"] = "Bearer"
        else:
            import boto3

            session = boto3.Session()
            config = eks_configuration(target.client("eks", region), session.get_credentials, region,
                                       naming.cluster_name(target.env.name, region))
        config.retries = False  # the engine decides what to retry
        return config

    return target.cached(("kubernetes-configuration", region), build)


def apps_api(target: "Target", region: str):
    """The AppsV1Api of the region's cluster (Deployments and their scale)."""
    def build():
        from kubernetes.client import ApiClient, AppsV1Api

        return AppsV1Api(ApiClient(configuration(target, region)))

    return target.cached(("kubernetes", region), build)


def core_api(target: "Target", region: str):
    """The CoreV1Api of the region's cluster (pods, Secrets, port-forward), on its own ApiClient:
    `kubernetes.stream.portforward` swaps its client's request method while it connects."""
    def build():
        from kubernetes.client import ApiClient, CoreV1Api

        return CoreV1Api(ApiClient(configuration(target, region)))

    return target.cached(("kubernetes-core", region), build)


def call(target: "Target", fn: Callable, *args, **kwargs):
    """One API call with the target's timeouts, its failures translated for `retry.classify`."""
    import urllib3
    from kubernetes.client.exceptions import ApiException

    try:
        return fn(*args, _request_timeout=(target.connect_timeout_s, target.read_timeout_s), **kwargs)
    except ApiException as exc:
        raise KubeApiError(int(exc.status or 0), _message(exc)) from None
    except urllib3.exceptions.HTTPError as exc:
        raise ConnectionError(f"Kubernetes API: {exc}") from None


def _message(exc) -> str:
    import json

    try:
        return json.loads(exc.body).get("message") or exc.reason
    except (TypeError, ValueError, AttributeError):
        return str(exc.reason)


# -- the runtime Deployments ---------------------------------------------------------------
def runtime_replicas(target: "Target", ctx: RunContext, region: str) -> dict[str, Replicas]:
    """Serving pool -> desired and ready replicas of its runtime Deployment in the region."""
    api = apps_api(target, region)
    namespace = naming.serving_namespace()
    found = {}
    for pool in target.env.serving_pools:
        name = naming.runtime_deployment(pool.name)
        scale = ctx.call(f"read scale of {name} in {region}", call, target,
                         api.read_namespaced_deployment_scale, name, namespace)
        status = ctx.call(f"read status of {name} in {region}", call, target,
                          api.read_namespaced_deployment_status, name, namespace)
        found[pool.name] = Replicas(desired=scale.spec.replicas or 0, ready=status.status.ready_replicas or 0)
    return found


def scale_runtime(target: "Target", ctx: RunContext, region: str, replicas: int) -> list[str]:
    """Patch each serving pool's Deployment to `replicas` where it is not there yet."""
    api = apps_api(target, region)
    namespace = naming.serving_namespace()
    changed = []
    for pool, have in runtime_replicas(target, ctx, region).items():
        if have.desired == replicas:
            continue
        name = naming.runtime_deployment(pool)
        ctx.call(f"scale {name} in {region}", call, target, api.patch_namespaced_deployment_scale, name, namespace,
                 {"spec": {"replicas": replicas}}, _content_type=PATCH_TYPE)
        changed.append(f"{name} {have.desired}->{replicas}")
    return changed


def runtime_at(target: "Target", ctx: RunContext, region: str, replicas: int) -> bool | str:
    """True once every serving pool's Deployment wants `replicas` and has them all ready."""
    off = [f"{pool} {r.ready}/{r.desired} ready (want {replicas})"
           for pool, r in runtime_replicas(target, ctx, region).items() if r.desired != replicas or r.ready < replicas]
    return True if not off else "; ".join(off)
