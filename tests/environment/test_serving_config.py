"""The environment's serving section: the image by digest, the pools that serve, replicas that
fit them, the certificate's name, and who may administer and operate the clusters. Each mistake
exits 2 naming the field, before anything is synthesized."""
from __future__ import annotations

import copy

import pytest
import yaml

from mlfleet.stacks.environment import ENVIRONMENTS_DIR, parse_environment

from helpers.cli import synth_invalid

DIGEST = "sha256:" + "ab" * 32


def _example(name: str) -> dict:
    return yaml.safe_load((ENVIRONMENTS_DIR / f"{name}.yaml").read_text())


def _mutated(name: str, mutate) -> dict:
    data = copy.deepcopy(_example(name))
    mutate(data)
    return data


def _serving(**fields):
    return lambda d: d["serving"].update(fields)


INVALID = {
    "digest is a tag": ("prod", _serving(image={"digest": "latest"}),
                        "serving.image.digest: 'latest' is not sha256: followed by 64 lowercase hex digits "
                        "(that is a tag: tags are mutable, pin the image by its digest)"),
    "digest too short": ("prod", _serving(image={"digest": "sha256:abc"}),
                         "serving.image.digest: 'sha256:abc' is not sha256: followed by 64"),
    "digest in upper case": ("prod", _serving(image={"digest": "sha256:" + "AB" * 32}),
                             "serving.image.digest: 'sha256:ABAB"),
    "name with a mutable tag": ("prod", _serving(image={"name": "runtime:0.1.0", "digest": DIGEST}),
                                "serving.image.name: 'runtime:0.1.0' carries a tag or digest"),
    "no image": ("prod", lambda d: d["serving"].pop("image"), "serving.image: Field required"),
    "unknown serving pool": ("prod", _serving(pools=["inference", "online"]),
                             "serving.pools[1]: online is not one of gpu_pools (inference, batch)"),
    "pool listed twice": ("prod", _serving(pools=["inference", "inference"]),
                          "serving.pools[1]: inference is listed twice"),
    "primary replicas do not fit": (
        "prod", _serving(replicas={"primary": 17, "standby": 2}),
        "serving.replicas.primary: 17 replicas x 1 GPU(s) do not fit gpu_pools.0 (inference) on AWS: "
        "max_size 16 x 1 GPU(s) per node = 16"),
    "failover replicas do not fit": (
        "prod", _serving(replicas={"primary": 4, "standby": 2, "failover": 20}),
        "serving.replicas.failover: 20 replicas x 1 GPU(s) do not fit gpu_pools.0 (inference)"),
    "warm replicas beyond the warm nodes": (
        "prod", _serving(replicas={"primary": 4, "standby": 3}),
        "serving.replicas.standby: 3 replicas x 1 GPU(s) do not fit gpu_pools.0 (inference) on AWS: "
        "warm_standby 2 x 1 GPU(s) per node = 2"),
    "gpus per pod beyond the node": (
        "prod", _serving(resources={"gpus": 2}),
        "serving.replicas.standby: 2 replicas x 2 GPU(s) do not fit gpu_pools.0 (inference) on AWS: "
        "warm_standby 2 x 1 GPU(s) per node = 2"),
    "no warm replica": ("prod", _serving(replicas={"primary": 4, "standby": 0}),
                        "serving.replicas.standby: Input should be greater than or equal to 1"),
    "only pools that scale from zero": ("prod", lambda d: (d["serving"].pop("pools"),
                                                           d["gpu_pools"][0].update(min_size=0, warm_standby=0)),
                                        "serving.pools: no pool has min_size >= 1 to serve on"),
    "queued provisioning pool serves": ("research", _serving(pools=["batch"]),
                                        "serving.pools: batch is a queued-provisioning pool"),
    "google pool sharing counts each client": (
        "research", _serving(replicas={"primary": 41, "standby": 1}),
        "serving.replicas.primary: 41 replicas x 1 GPU(s) do not fit gpu_pools.0 (inference) on GCP: "
        "max_size 10 x 4 GPU(s) per node = 40"),
    "bad quantity": ("prod", _serving(resources={"memory": "lots"}), "serving.resources.memory: String should match"),
    "certificate outside the zone": ("prod", _serving(certificate_domain="models.other.org"),
                                     "serving.certificate_domain: models.other.org is outside example.com"),
    "deployer is not a role": ("prod", lambda d: d["identities"].update(
        deployer_principals=["arn:aws:iam::333333333333:user/alice"]),
        "identities.deployer_principals[0]: String should match pattern"),
    "proxy range missing": ("research", lambda d: d["regions"][0]["network"].pop("proxy_cidr"),
                            "regions[0].network.proxy_cidr: Field required"),
    "proxy range overlaps": ("research", lambda d: d["regions"][1]["network"].update(proxy_cidr="10.70.32.0/24"),
                             "regions[1].network.proxy_cidr: 10.70.32.0/24 overlaps 10.70.32.0/23 (proxy_cidr)"),
    "proxy range too small": ("research", lambda d: d["regions"][0]["network"].update(proxy_cidr="10.70.32.0/27"),
                              "regions[0].network.proxy_cidr"),
    "metrics namespace not a name": ("prod", _serving(metrics={"namespace": "Monitoring"}),
                                     "serving.metrics.namespace: String should match pattern"),
    "pod monitor labels without the monitor": (
        "prod", _serving(metrics={"pod_monitor_labels": {"release": "kube-prometheus-stack"}}),
        "serving.metrics: pod_monitor_labels label a PodMonitor: set pod_monitor: true"),
    "pod monitor label not a label": ("prod", _serving(metrics={"pod_monitor": True,
                                                                "pod_monitor_labels": {"release": "a b"}}),
                                      "serving.metrics.pod_monitor_labels.release: String should match pattern"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_serving_is_refused_with_path_and_reason(case, tmp_path, capsys):
    name, mutate, expected = INVALID[case]
    err = synth_invalid(tmp_path, capsys, _mutated(name, mutate))
    assert expected in err


def test_defaults_serve_every_pool_that_keeps_nodes():
    data = _mutated("prod", lambda d: d["serving"].pop("pools"))
    env = parse_environment(data, "prod")
    assert [p.name for p in env.serving_pools] == ["inference"]  # batch has min_size 0
    assert env.serving.replicas.on_failover == 4
    data = _mutated("staging", lambda d: None)
    staging = parse_environment(data, "staging")
    assert staging.serving.replicas.on_failover == staging.serving.replicas.primary == 2
    assert staging.serving.tls_name == staging.serving.dns_name


def test_a_certificate_domain_in_the_zone_is_accepted():
    env = parse_environment(_mutated("prod", _serving(certificate_domain="api.example.com")), "prod")
    assert env.serving.tls_name == "api.example.com"


def test_the_metrics_block_reaches_every_region_s_network_policy_and_pod_monitor():
    """Who scrapes the runtime is the environment's: the NetworkPolicy admits the metrics port from
    that namespace only, and the PodMonitor carries the labels the operator selects by."""
    from mlfleet.stacks.review.synth import synthesize_for_review

    metrics = {"namespace": "gmp-system", "pod_monitor": True, "pod_monitor_labels": {"release": "prom"}}
    env = parse_environment(_mutated("staging", _serving(metrics=metrics)), "staging with metrics")
    stacks, _ = synthesize_for_review(env)
    serving = {name: tf for name, tf in stacks.items() if name.endswith("-serving")}
    assert len(serving) == len(env.regions)
    for name, tf in serving.items():
        (policy,) = tf["resource"]["kubernetes_network_policy_v1"].values()
        scrape = [rule for rule in policy["spec"]["ingress"]
                  if [p["port"] for p in rule["ports"]] == ["8003"]]
        assert [b["namespace_selector"]["match_labels"] for rule in scrape for b in rule["from"]] == [
            {"kubernetes.io/metadata.name": "gmp-system"}], name
        monitors = [m["manifest"] for m in tf["resource"]["kubernetes_manifest"].values()
                    if m["manifest"]["kind"] == "PodMonitor"]
        assert [m["metadata"]["labels"]["release"] for m in monitors] == ["prom"], name
