"""Pinning as against a real cluster: the official `kubernetes` client's port-forward (websocket,
v4.channel.k8s.io) through the sandbox's fake API server to each region's runtime process, the
admin token read from the `mlfleet-runtime-admin` Secret. One shared sandbox (tests/dr/conftest.py)."""
from __future__ import annotations

import pytest

from mlfleet.dr import kube, kube_portforward, serving
from mlfleet.dr.audit import AuditLog
from mlfleet.dr.engine import RunContext, StepFailed
from mlfleet.dr.errors import DrUsageError
from mlfleet.dr.runbooks import _replicas, failover
from mlfleet.dr.sandbox import EXAMPLE_MODEL
from mlfleet.dr.target import Target
from mlfleet.stacks.environment import load_environment, naming

pytestmark = pytest.mark.sandbox

PRIMARY, STANDBY = "us-east-1", "us-west-2"
PORTFORWARD = "/portforward"


@pytest.fixture
def pf_target(sandbox, tmp_path, monkeypatch):
    """The sandbox pinned through port-forward, the token from the Secret (no MLFLEET_ADMIN_TOKEN)."""
    monkeypatch.delenv("MLFLEET_ADMIN_TOKEN", raising=False)
    sandbox.reset()
    t = Target.sandbox(sandbox.env, sandbox.state_dir, port_forward=True)
    t.state_dir = tmp_path
    return t


def _ctx(target):
    return RunContext(retry=target.retry, poll_interval_s=target.poll_interval_s)


def _forwards(sandbox, since: int, region: str) -> list[str]:
    return [e["path"] for e in sandbox.ledger.since(since)
            if e["proxy"] == "kubernetes" and e["region"] == region and e["path"].endswith(PORTFORWARD)]


def _pin_over_http(target, region):
    return serving.current_pin(target.serving_urls[region], EXAMPLE_MODEL)


def test_pin_through_port_forward_reaches_every_ready_pod_and_the_version_serves(sandbox, pf_target):
    assert pf_target.admin_token is None, "the token must come from the Secret"
    other = "1" if sandbox.champion != "1" else "2"
    seq = len(sandbox.ledger.since())
    pods = kube_portforward.runtime_pods(pf_target, PRIMARY)
    assert len(pods) == sandbox.env.serving.replicas.primary and all(p.ready for p in pods)

    result = kube_portforward.pin_region(pf_target, _ctx(pf_target), PRIMARY, EXAMPLE_MODEL, other)

    # every pod of a region stands for the region's one runtime process: the first pod's pin is seen
    # by the next one, which is then left as it is
    assert sorted(result.pinned + result.unchanged) == [p.name for p in pods] and not result.skipped
    assert result.pinned == [pods[0].name]
    assert _pin_over_http(pf_target, PRIMARY) == other
    answered = serving.infer(pf_target.serving_urls[PRIMARY], EXAMPLE_MODEL)
    assert answered["version"] == other, "the pinned version serves afterwards"
    assert kube_portforward.current_pins(pf_target, _ctx(pf_target), PRIMARY, EXAMPLE_MODEL) == \
        {p.name: other for p in pods}
    secret = f"/secrets/{kube_portforward.ADMIN_SECRET}"
    secret_reads = [e for e in sandbox.ledger.since(seq) if e["path"].endswith(secret)]
    assert secret_reads, "the admin token was read through the API"
    # one forward per request: a read per pod, a pin where it differed, a read per pod for current_pins
    assert len(_forwards(sandbox, seq, PRIMARY)) == 2 * len(pods) + len(result.pinned)

    again = kube_portforward.pin_region(pf_target, _ctx(pf_target), PRIMARY, EXAMPLE_MODEL, other)
    assert again.pinned == [] and sorted(again.unchanged) == [p.name for p in pods], "idempotent"


def test_a_wrong_token_fails_with_the_pod_name_and_changes_nothing(sandbox, pf_target):
    pf_target.admin_token = "not-the-token"  # as a wrong MLFLEET_ADMIN_TOKEN would be
    other = "1" if sandbox.champion != "1" else "2"
    pod = kube_portforward.runtime_pods(pf_target, STANDBY)[0].name
    with pytest.raises(StepFailed) as failed:
        kube_portforward.pin_region(pf_target, _ctx(pf_target), STANDBY, EXAMPLE_MODEL, other)
    message = str(failed.value)
    assert pod in message and "HTTP 401" in message and "not retried" in message
    assert _pin_over_http(pf_target, STANDBY) == sandbox.champion


def test_a_secret_with_a_stale_token_is_refused_too(sandbox, pf_target):
    sandbox.kube.seed_secret(STANDBY, naming.serving_namespace(), kube_portforward.ADMIN_SECRET,
                             {kube_portforward.ADMIN_SECRET_KEY: "rotated-elsewhere"})
    other = "1" if sandbox.champion != "1" else "2"
    with pytest.raises(StepFailed, match="HTTP 401"):
        kube_portforward.pin_region(pf_target, _ctx(pf_target), STANDBY, EXAMPLE_MODEL, other)
    assert _pin_over_http(pf_target, STANDBY) == sandbox.champion


def test_a_missing_secret_is_a_usage_error_naming_the_way_out(sandbox, pf_target):
    sandbox.kube.clear()  # no Deployments and no Secret
    with pytest.raises(DrUsageError, match="MLFLEET_ADMIN_TOKEN") as failed:
        kube_portforward.pin_region(pf_target, _ctx(pf_target), STANDBY, EXAMPLE_MODEL, sandbox.champion)
    assert kube_portforward.ADMIN_SECRET in str(failed.value)


def test_a_pod_that_is_not_ready_is_skipped_and_reported(sandbox, pf_target):
    other = "1" if sandbox.champion != "1" else "2"
    sandbox.kube.hold_ready(PRIMARY, 1)  # two pods, one fails its readiness probe
    pods = kube_portforward.runtime_pods(pf_target, PRIMARY)
    ready = [p.name for p in pods if p.ready]
    unready = [p for p in pods if not p.ready]
    assert len(ready) == 1 and len(unready) == 1 and "not Ready" in unready[0].detail

    result = kube_portforward.pin_region(pf_target, _ctx(pf_target), PRIMARY, EXAMPLE_MODEL, other)
    assert result.pinned == ready
    assert len(result.skipped) == 1 and result.skipped[0].startswith(unready[0].name)
    assert unready[0].name in result.summary(EXAMPLE_MODEL, other)

    sandbox.kube.hold_ready(PRIMARY, 0)
    with pytest.raises(StepFailed, match="no Running and Ready runtime pod"):
        kube_portforward.pin_region(pf_target, _ctx(pf_target), PRIMARY, EXAMPLE_MODEL, other)


def test_the_fake_forwards_only_the_management_port_like_the_pod(sandbox, pf_target):
    from kubernetes.stream import portforward

    pod = kube_portforward.runtime_pods(pf_target, STANDBY)[0].name
    api = kube.core_api(pf_target, STANDBY)
    forward = portforward(api.connect_get_namespaced_pod_portforward, pod, naming.serving_namespace(), ports="8000")
    try:
        assert kube_portforward._error(forward, 8000) is not None
        assert "connection refused" in forward.error(8000) and "8000" in forward.error(8000)
    finally:
        forward.close()
    ask = kube_portforward.exchange(pf_target, STANDBY, pod, port=8000)
    with pytest.raises(kube_portforward.PortForwardError, match=f"{pod}:8000.*connection refused"):
        serving.current_pin(ask, EXAMPLE_MODEL)
    # ...while 8002 answers, and an unknown pod or a wrong API token is refused at the handshake
    assert serving.current_pin(kube_portforward.exchange(pf_target, STANDBY, pod), EXAMPLE_MODEL) == sandbox.champion
    with pytest.raises(kube.KubeApiError) as missing:
        serving.current_pin(kube_portforward.exchange(pf_target, STANDBY, "mlfleet-runtime-gone"), EXAMPLE_MODEL)
    assert missing.value.status_code == 404


def test_a_wrong_kubernetes_token_is_refused_at_the_handshake(sandbox, tmp_path):
    t = Target.sandbox(sandbox.env, sandbox.state_dir, port_forward=True)
    t.kube_token = "wrong"
    with pytest.raises(kube.KubeApiError) as refused:
        with kube_portforward.forwarded(t, STANDBY, "any-pod"):
            pass
    assert refused.value.status_code == 401


def test_failover_pins_through_port_forward(sandbox, pf_target):
    seq = len(sandbox.ledger.since())
    result = failover(pf_target, STANDBY, planned=True).execute(
        _ctx(pf_target), state_dir=pf_target.runs_dir, lock=pf_target.lock(STANDBY),
        audit=AuditLog(pf_target.audit_path))
    assert result.status == "completed"
    # The first pin reaches the warm pods (routing goes ahead on them); the second, every pod the
    # scale-up brought.
    pin_step = next(s for s in result.steps if s.name == "pin-scaled-runtime")
    pods = pin_step.facts["pinned_pods"][EXAMPLE_MODEL]
    assert len(pods) == _replicas(sandbox.env, STANDBY, serving=True), "every pod of the scaled-up runtime"
    assert _forwards(sandbox, seq, STANDBY), "the pin went through port-forward"
    assert _pin_over_http(pf_target, STANDBY) == sandbox.champion


def test_a_deployed_environment_pins_through_port_forward(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLEET_ADMIN_TOKEN", raising=False)
    t = Target.aws(load_environment("staging"), tmp_path)
    assert t.pin_through_port_forward and t.admin_token is None, "the token then comes from the Secret"
    monkeypatch.setenv("MLFLEET_ADMIN_TOKEN", "set-by-the-operator")
    assert Target.aws(load_environment("staging"), tmp_path).admin_token == "set-by-the-operator"
