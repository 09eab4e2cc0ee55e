"""DR knows about the serving plane: the runtime Deployments (the `kubernetes` client against the
sandbox's fake API server), the runtime image in every region's ECR repository, the
scale-runtime step of failover and failback, and the readiness checks over both."""
from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from urllib.parse import parse_qs, urlsplit

import pytest

from mlfleet.dr import kube
from mlfleet.dr.audit import AuditLog
from mlfleet.dr.blocks.registry import registry_writer
from mlfleet.dr.engine import RunContext
from mlfleet.dr.errors import RunbookAborted
from mlfleet.dr.readiness import readiness
from mlfleet.dr.retry import PERMANENT, TRANSIENT, classify
from mlfleet.dr.runbooks import failback, failover
from mlfleet.stacks.environment import load_environment, naming

from helpers.runbooks import Crash, crash_at

PRIMARY, STANDBY = "us-east-1", "us-west-2"
NAMESPACE = naming.serving_namespace()
DEPLOYMENT = naming.runtime_deployment("inference")


def _ctx(target):
    return RunContext(retry=target.retry, poll_interval_s=target.poll_interval_s)


def _execute(target, runbook, lock_region=STANDBY, *, lock=None, **kw):
    return runbook.execute(_ctx(target), state_dir=target.runs_dir, lock=lock or target.lock(lock_region),
                           audit=AuditLog(target.audit_path), **kw)


def _checks(target) -> dict[tuple[str, str], tuple[bool, str]]:
    return {(x.region, x.check): (x.ok, x.detail) for x in readiness(target, _ctx(target))}


# -- the EKS token and configuration (no network) --------------------------------------------
def test_eks_token_is_a_presigned_get_caller_identity_bound_to_the_cluster():
    from botocore.credentials import Credentials

    token = kube.eks_token(Credentials("AKIDEXAMPLE", "secret"), "us-west-2", "mlfleet-prod-us-west-2")
    assert token.startswith("k8s-aws-v1.") and "=" not in token
    encoded = token.removeprefix("k8s-aws-v1.")
    url = urlsplit(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode())
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert (url.scheme, url.netloc) == ("https", "sts.us-west-2.amazonaws.com")
    assert query["Action"] == "GetCallerIdentity" and query["X-Amz-Expires"] == "60"
    assert query["X-Amz-SignedHeaders"] == "host;x-k8s-aws-id", "EKS checks that the signature covers the cluster"
    assert query["X-Amz-Credential"].startswith("AKIDEXAMPLE/") and "/us-west-2/sts/" in query["X-Amz-Credential"]
    assert len(query["X-Amz-Signature"]) == 64


def test_eks_configuration_takes_endpoint_and_ca_from_the_cluster_and_refreshes_the_token(tmp_path):
    from botocore.credentials import Credentials

    pem = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    asked = []

    class Eks:  # the one EKS call it makes
        def describe_cluster(self, name):
            asked.append(name)
            return {"cluster": {"endpoint": "https://ABC.gr7.us-west-2.eks.amazonaws.com",
                                "certificateAuthority": {"data": base64.b64encode(pem).decode()}}}

    made = []

    def credentials():
        made.append(1)
        return Credentials("AKIDEXAMPLE", "secret")

    config = kube.eks_configuration(Eks(), credentials, "us-west-2", "mlfleet-prod-us-west-2")
    assert asked == ["mlfleet-prod-us-west-2"]
    assert config.host == "https://ABC.gr7.us-west-2.eks.amazonaws.com" and config.verify_ssl
    with open(config.ssl_ca_cert, "rb") as ca:
        assert ca.read() == pem
    header = config.get_api_key_with_prefix("BearerToken")
    assert header.startswith("Bearer k8s-aws-v1.")
    config.get_api_key_with_prefix("BearerToken")
    assert len(made) == 1, "a fresh token is made only when the last one is about to expire"


# -- the fake Kubernetes API, through the real client -----------------------------------------
@pytest.fixture
def fake_kubernetes():
    from mlfleet.dr.sandbox.fake_kubernetes import FakeKubernetes
    from mlfleet.dr.sandbox.faults import FaultBook, Ledger
    from mlfleet.dr.sandbox.moto_extensions import Settings

    fake = FakeKubernetes("tok", FaultBook(), Ledger(), Settings(pod_ready_s=0.3)).start()
    fake.seed(STANDBY, NAMESPACE, DEPLOYMENT, replicas=1, image="registry/mlfleet-staging/runtime@sha256:00")
    yield fake
    fake.stop()


def _apps(fake, region=STANDBY, token="tok"):
    from kubernetes.client import ApiClient, AppsV1Api, Configuration

    config = Configuration(host=fake.host(region))
    config.api_key["BearerToken"], config.api_key_prefix["BearerToken"] = token, "Bearer"
    return AppsV1Api(ApiClient(config))


@pytest.mark.sandbox
def test_the_fake_answers_the_kubernetes_client_and_pods_turn_ready_after_the_delay(fake_kubernetes):
    apps = _apps(fake_kubernetes)
    scale = apps.read_namespaced_deployment_scale(DEPLOYMENT, NAMESPACE)
    assert (scale.kind, scale.api_version, scale.spec.replicas, scale.status.replicas) == \
        ("Scale", "autoscaling/v1", 1, 1)
    deployment = apps.read_namespaced_deployment(DEPLOYMENT, NAMESPACE)
    assert deployment.spec.template.spec.containers[0].image.endswith("@sha256:00")

    patched = apps.patch_namespaced_deployment_scale(DEPLOYMENT, NAMESPACE, {"spec": {"replicas": 3}},
                                                     _content_type="application/merge-patch+json")
    assert patched.spec.replicas == 3
    status = apps.read_namespaced_deployment_status(DEPLOYMENT, NAMESPACE).status
    assert (status.replicas, status.ready_replicas) == (3, 1), "new pods are not ready before they load the model"
    time.sleep(0.35)
    assert apps.read_namespaced_deployment_status(DEPLOYMENT, NAMESPACE).status.ready_replicas == 3

    # the client's default for a dict body is a strategic merge patch
    assert apps.patch_namespaced_deployment_scale(DEPLOYMENT, NAMESPACE, {"spec": {"replicas": 0}}).spec.replicas == 0
    status = apps.read_namespaced_deployment_status(DEPLOYMENT, NAMESPACE).status
    assert status.ready_replicas is None, "a scale-down is immediate, and a zero count is left out of a status"


@pytest.mark.sandbox
def test_the_fake_refuses_what_the_api_server_refuses(fake_kubernetes):
    from kubernetes.client.exceptions import ApiException

    with pytest.raises(ApiException) as caught:
        _apps(fake_kubernetes).read_namespaced_deployment_scale("mlfleet-runtime-nope", NAMESPACE)
    assert caught.value.status == 404 and json.loads(caught.value.body)["reason"] == "NotFound"
    with pytest.raises(ApiException) as caught:
        _apps(fake_kubernetes, token="wrong").read_namespaced_deployment_scale(DEPLOYMENT, NAMESPACE)
    assert caught.value.status == 401
    with pytest.raises(ApiException) as caught:
        _apps(fake_kubernetes).patch_namespaced_deployment_scale(DEPLOYMENT, NAMESPACE, {"spec": {"replicas": -1}})
    assert caught.value.status == 422
    request = urllib.request.Request(
        f"{fake_kubernetes.host(STANDBY)}/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{DEPLOYMENT}/scale",
        data=b'[{"op": "replace", "path": "/spec/replicas", "value": 2}]', method="PATCH",
        headers={"Authorization": "Bearer tok", "Content-Type": "application/json-patch+json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 415 and fake_kubernetes.replicas(STANDBY, NAMESPACE, DEPLOYMENT) == (1, 1)


@pytest.mark.sandbox
def test_a_failed_region_answers_503_which_the_engine_retries(fake_kubernetes):
    from mlfleet.dr.sandbox.faults import Fault

    fake_kubernetes.faults.add(Fault(region=STANDBY))
    target = type("T", (), {"connect_timeout_s": 1.0, "read_timeout_s": 2.0})()
    with pytest.raises(kube.KubeApiError) as caught:
        kube.call(target, _apps(fake_kubernetes).read_namespaced_deployment_scale, DEPLOYMENT, NAMESPACE)
    assert caught.value.status_code == 503 and classify(caught.value) == TRANSIENT
    fake_kubernetes.faults.clear()
    with pytest.raises(kube.KubeApiError) as caught:
        kube.call(target, _apps(fake_kubernetes).read_namespaced_deployment_scale, "mlfleet-runtime-x", NAMESPACE)
    assert classify(caught.value) == PERMANENT, "a missing Deployment does not appear by retrying"


# -- runbooks and readiness against the sandbox ----------------------------------------------
def _runtime(target, region):
    return kube.runtime_replicas(target, _ctx(target), region)["inference"]


@pytest.mark.sandbox
def test_sandbox_seeds_each_region_at_its_role_replicas_and_the_image_everywhere(sandbox, target):
    replicas = sandbox.env.serving.replicas
    assert _runtime(target, PRIMARY) == kube.Replicas(desired=replicas.primary, ready=replicas.primary)
    assert _runtime(target, STANDBY) == kube.Replicas(desired=replicas.standby, ready=replicas.standby)
    image = sandbox.env.serving.image
    for region in (PRIMARY, STANDBY):
        found = target.client("ecr", region).describe_images(
            repositoryName=naming.image_repository(sandbox.env.name, image.name),
            imageIds=[{"imageDigest": image.digest}])["imageDetails"]
        assert [i["imageDigest"] for i in found] == [image.digest]


@pytest.mark.sandbox
def test_failover_scales_the_target_runtime_to_on_failover_and_failback_returns_it(sandbox, target):
    replicas = sandbox.env.serving.replicas
    assert replicas.on_failover != replicas.standby, "the test needs a scale to observe"
    result = _execute(target, failover(target, STANDBY, planned=True))
    names = [s.name for s in result.steps]
    assert names.index("scale-runtime") == names.index("scale-nodes") + 1
    assert _runtime(target, STANDBY) == kube.Replicas(desired=replicas.on_failover, ready=replicas.on_failover)
    assert _runtime(target, PRIMARY).desired == replicas.primary, "the old primary keeps its replicas"

    back = _execute(target, failback(target), lock_region=PRIMARY)
    assert back.status == "completed"
    assert _runtime(target, PRIMARY) == kube.Replicas(desired=replicas.primary, ready=replicas.primary)
    assert _runtime(target, STANDBY) == kube.Replicas(desired=replicas.standby, ready=replicas.standby)
    steps = [s.name for s in back.steps]
    assert steps.index("restore-standby-runtime") < steps.index("restore-standby-size"), \
        "pods leave before the nodes under them"


@pytest.mark.sandbox
def test_scale_runtime_waits_for_ready_pods(sandbox, target):
    sandbox.settings.update({"pod_ready_s": 0.8})
    result = _execute(target, failover(target, STANDBY, planned=True))
    step = next(s for s in result.steps if s.name == "scale-runtime")
    assert step.ended - step.started >= 0.7, "verified only once the new pods loaded their model"


@pytest.mark.sandbox
def test_a_later_failure_scales_the_runtime_back_to_standby(sandbox, target):
    from mlfleet.dr.sandbox.faults import Fault

    def fail(step, event):
        if (step, event) == ("scale-runtime", "done"):
            sandbox.faults.add(Fault(region=STANDBY, service="rds", mode="503"))

    with pytest.raises(RunbookAborted) as caught:
        _execute(target, failover(target, STANDBY, planned=True), on_event=fail)
    sandbox.faults.clear()
    assert "scale-runtime" in caught.value.compensated
    assert _runtime(target, STANDBY).desired == sandbox.env.serving.replicas.standby
    # the switchover may still have been under way at the abort: the compensation waits for it to
    # end and switches back (it had asked for the way back too early and waited out its timeout,
    # leaving the writer in the standby)
    assert "promote-registry" in caught.value.compensated
    assert registry_writer(target, _ctx(target), via=PRIMARY) == PRIMARY


@pytest.mark.sandbox
def test_resume_after_a_crash_does_not_repeat_the_scale(sandbox, target):
    since = len(sandbox.ledger.since())

    crashed = target.lock(STANDBY)
    with pytest.raises(Crash):
        _execute(target, failover(target, STANDBY, planned=True), lock=crashed,
                 on_event=crash_at("scale-runtime", "applied"))
    crashed.abandon()  # the process died
    result = _execute(target, failover(target, STANDBY, planned=True), take_over_lock=True)
    assert result.resumed and result.status == "completed"
    patches = [e for e in sandbox.ledger.since(since) if e["method"] == "PATCH" and e["path"].endswith("/scale")]
    assert len(patches) == 1 and patches[0]["region"] == STANDBY


@pytest.mark.sandbox
def test_readiness_reports_replicas_and_the_image_per_region(sandbox, target):
    checks = _checks(target)
    digest = sandbox.env.serving.image.digest
    assert checks[(STANDBY, "runtime image")] == (True, f"runtime image {digest} present in {STANDBY}'s registry "
                                                        f"({naming.image_repository('staging', 'runtime')})")
    assert checks[(PRIMARY, "serving replicas ready")] == (True, "inference 2/2")
    assert checks[(STANDBY, "serving replicas ready")] == (True, "inference 1/1")


@pytest.mark.sandbox
def test_readiness_fails_when_a_standby_lacks_the_image(sandbox, target):
    assert target.control.remove_image(STANDBY) is True
    checks = _checks(target)
    ok, detail = checks[(STANDBY, "runtime image")]
    assert not ok and sandbox.env.serving.image.digest in detail and "missing" in detail
    assert all(ok for (region, check), (ok, _) in checks.items() if check != "runtime image")


@pytest.mark.sandbox
def test_readiness_fails_when_a_region_has_no_image_repository(sandbox, target):
    target.client("ecr", STANDBY).delete_repository(
        repositoryName=naming.image_repository(sandbox.env.name, sandbox.env.serving.image.name), force=True)
    ok, detail = _checks(target)[(STANDBY, "runtime image")]
    assert not ok and "has no repository" in detail


@pytest.mark.sandbox
def test_readiness_fails_when_a_regions_replicas_are_not_ready(sandbox, target):
    target.control.hold_ready(STANDBY, 0)
    checks = _checks(target)
    assert checks[(STANDBY, "serving replicas ready")] == (False, "inference 0/1")
    assert checks[(PRIMARY, "serving replicas ready")][0] is True


@pytest.mark.sandbox
def test_readiness_fails_when_a_regions_kubernetes_api_is_down(sandbox, target):
    target.control.inject(STANDBY, service="kubernetes")
    ok, detail = _checks(target)[(STANDBY, "serving replicas ready")]
    assert not ok and "503" in detail


def test_staging_replicas_are_what_these_tests_assume():
    replicas = load_environment("staging").serving.replicas
    assert (replicas.primary, replicas.standby, replicas.on_failover) == (2, 1, 2)
