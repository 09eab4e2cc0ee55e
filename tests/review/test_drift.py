"""`mlfleet drift` against a moto server and the fake Google endpoint seeded with the synthesized
intent, then changed by hand: a node group scaled, replication removed, a record edited, a GKE
pool narrowed, a replica's protection dropped, turbo replication off, a DMS job failed."""
from __future__ import annotations

import argparse
import json

import boto3
import pytest
from live_gcp import apply_gcp_intent
from live_platform import apply_intent

from mlfleet.stacks.clients.google_cloud import GcpClients, node_pool_path
from mlfleet.stacks.review.cli import register
from mlfleet.stacks.review.drift import detect_drift

pytestmark = pytest.mark.sandbox  # reads live state from a moto server and the fake Google endpoint


@pytest.fixture(scope="module")
def moto_endpoint():
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                           "AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_DEFAULT_REGION": "us-east-1"}.items():
            patch.setenv(key, value)
        patch.delenv("AWS_PROFILE", raising=False)
        yield f"http://{host}:{port}"
    server.stop()


def _deploy(examples, moto_endpoint, name: str):
    """`name` applied to an emptied moto server: a platform matching the code."""
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST"), timeout=10).close()
    env, stacks, _ = examples[name]
    apply_intent(env, stacks, boto3.Session())
    return env, stacks


@pytest.fixture
def deployed(examples, moto_endpoint):
    return _deploy(examples, moto_endpoint, "prod")


@pytest.fixture
def deployed_hybrid(examples, moto_endpoint):
    return _deploy(examples, moto_endpoint, "hybrid")


def _run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(list(argv))
    return args.handler(args)


def test_freshly_applied_platform_has_no_drift(deployed, capsys):
    env, stacks = deployed
    assert detect_drift(env, stacks, boto3.Session()) == []
    assert _run_cli("drift", "--env", "prod") == 0
    assert "no drift" in capsys.readouterr().out


def test_hand_changes_are_reported_with_where_and_what_the_code_says(deployed, capsys):
    env, stacks = deployed
    session = boto3.Session()
    eks = session.client("eks", region_name="us-west-2")
    eks.update_nodegroup_config(clusterName="mlfleet-prod-us-west-2", nodegroupName="inference-gpu",
                                scalingConfig={"minSize": 0, "maxSize": 16, "desiredSize": 0})
    s3 = session.client("s3", region_name="us-east-1")
    s3.delete_bucket_replication(Bucket="mlfleet-prod-333333333333-us-east-1")
    session.client("route53").change_resource_record_sets(HostedZoneId=env.serving.hosted_zone_id, ChangeBatch={
        "Changes": [{"Action": "UPSERT", "ResourceRecordSet": {
            "Name": "standby.models.example.com", "Type": "CNAME", "SetIdentifier": "us-east-2", "Weight": 0,
            "TTL": 300, "ResourceRecords": [{"Value": "us-east-2.models.example.com"}]}}]})
    drifts = detect_drift(env, stacks, session)
    found = {(d.region, d.resource, d.attribute, d.live, d.code) for d in drifts}
    assert ("us-west-2", "node group inference-gpu in EKS cluster mlfleet-prod-us-west-2",
            "scaling minimum", "0", "2") in found
    lost = [d for d in drifts if d.resource == "bucket mlfleet-prod-333333333333-us-east-1"]
    assert {d.attribute for d in lost} == {f"replication to arn:aws:s3:::mlfleet-prod-333333333333-{r}"
                                           for r in ("us-west-2", "us-east-2")}
    assert all(d.live == "missing" for d in lost)
    record = {d.attribute: (d.live, d.code) for d in drifts if "(us-east-2)" in d.resource}
    assert record["TTL"] == ("300", "60") and record["weight"] == ("0", "100")
    assert record["health check (by FQDN)"] == ("absent", "us-east-2.models.example.com")
    assert len(drifts) == 1 + 2 + 3

    assert _run_cli("drift", "--env", "prod", "--region", "us-west-2", "--format", "json") == 1
    only_west = json.loads(capsys.readouterr().out)
    assert [d["attribute"] for d in only_west] == ["scaling minimum"]
    assert _run_cli("drift", "--env", "prod", "--region", "us-east-2") == 0
    assert "no drift" in capsys.readouterr().out


def test_writer_leaving_the_global_cluster_is_drift(deployed):
    env, stacks = deployed
    session = boto3.Session()
    rds = session.client("rds", region_name="us-east-1")
    found = {d.attribute: d for d in detect_drift(env, stacks, session, only="global")}
    assert "writer" not in found
    rds.remove_from_global_cluster(GlobalClusterIdentifier="mlfleet-prod-registry",
                                   DbClusterIdentifier=_arn(rds, "us-east-1", "mlfleet-prod-registry-us-east-1"))
    found = {d.attribute: d for d in detect_drift(env, stacks, session, only="global")}
    assert found["writer"].code == "mlfleet-prod-registry-us-east-1 (us-east-1)"
    assert "mlfleet-prod-registry-us-east-1 (us-east-1)" not in found["members"].live


def _arn(rds, region: str, identifier: str) -> str:
    return rds.describe_db_clusters(DBClusterIdentifier=identifier)["DBClusters"][0]["DBClusterArn"]


def test_unknown_region_is_a_usage_error(moto_endpoint):
    from mlfleet.stacks.environment.errors import MlfleetError

    with pytest.raises(MlfleetError, match="no region 'eu-west-1'") as raised:
        _run_cli("drift", "--env", "prod", "--region", "eu-west-1")
    assert raised.value.exit_code == 2


@pytest.fixture
def fake_gcp():
    from mlfleet.dr.sandbox.fake_gcp import FakeGcp
    from mlfleet.dr.sandbox.faults import FaultBook, Ledger

    fake = FakeGcp(FaultBook(), Ledger()).start()
    yield fake
    fake.stop()


@pytest.fixture
def deployed_research(examples, fake_gcp):
    env, stacks, _ = examples["research"]
    apply_gcp_intent(env, stacks, fake_gcp)
    return env, stacks, fake_gcp


def _gcp(fake) -> GcpClients:
    return GcpClients(endpoint=fake.url)


def test_freshly_applied_google_platform_has_no_drift(deployed_research, moto_endpoint, capsys):
    env, stacks, fake = deployed_research
    assert detect_drift(env, stacks, boto3.Session(), only="us-east4", gcp_clients=_gcp(fake)) == []
    assert detect_drift(env, stacks, boto3.Session(), only="gcp-global", gcp_clients=_gcp(fake)) == []
    for scope in ("us-central1", "us-east4", "gcp-global"):
        assert _run_cli("drift", "--env", "research", "--region", scope, "--gcp-endpoint", fake.url) == 0
        assert "no drift" in capsys.readouterr().out


def test_google_hand_changes_are_reported(deployed_research):
    env, stacks, fake = deployed_research
    project = env.gcp.project_id
    pool = fake.node_pools[(project, "us-east4", "mlf-research-us-east4", "inference-gpu")]
    pool["autoscaling"]["totalMaxNodeCount"] = 2
    pool["config"]["taints"] = []
    replica = fake.sql_instances[(project, "mlfleet-research-registry-us-east4")]
    replica["settings"]["deletionProtectionEnabled"] = False
    replica.pop("masterInstanceName")  # promoted by hand: it follows nothing now
    bucket = fake.buckets["mlfleet-research-research-models"]
    bucket["rpo"] = "DEFAULT"
    del fake.node_pools[(project, "us-central1", "mlf-research-us-central1", "batch-gpu")]

    found = {(d.region, d.resource, d.attribute, d.live, d.code)
             for d in detect_drift(env, stacks, boto3.Session(), only=None, gcp_clients=_gcp(fake))
             if d.region != "global"}
    pool_name = "node pool inference-gpu in GKE cluster mlf-research-us-east4"
    assert found == {
        ("us-east4", pool_name, "autoscaling total maximum", "2", "10"),
        ("us-east4", pool_name, "taints", "[]", '["nvidia.com/gpu=present:NO_SCHEDULE"]'),
        ("us-east4", "Cloud SQL instance mlfleet-research-registry-us-east4", "deletion protection", "false", "true"),
        ("us-east4", "Cloud SQL instance mlfleet-research-registry-us-east4", "follows", "absent",
         "mlfleet-research-registry-us-central1"),
        ("us-central1", "node pool batch-gpu in GKE cluster mlf-research-us-central1", "existence", "missing",
         "exists"),
        ("gcp-global", "bucket gs://mlfleet-research-research-models", "replication", "DEFAULT", "ASYNC_TURBO"),
    }


def test_a_failover_raising_the_gke_minimum_shows_as_drift(deployed_research):
    from mlfleet.dr import gcp
    from mlfleet.dr.engine import RunContext

    env, stacks, fake = deployed_research
    clients = _gcp(fake)
    path = node_pool_path(env.gcp.project_id, "us-east4", "mlf-research-us-east4", "inference-gpu")
    gcp.raise_pool_minimum(clients, RunContext(), path, 3)
    [drift] = detect_drift(env, stacks, boto3.Session(), only="us-east4", gcp_clients=clients)
    assert (drift.attribute, drift.live, drift.code) == ("autoscaling total minimum", "3", "1")


def test_the_cross_cloud_environment_is_read_on_both_clouds(deployed_hybrid, fake_gcp, capsys):
    env, stacks = deployed_hybrid
    apply_gcp_intent(env, stacks, fake_gcp)
    assert _run_cli("drift", "--env", "hybrid", "--gcp-endpoint", fake_gcp.url) == 0
    assert "no drift" in capsys.readouterr().out
    job = fake_gcp.migration_jobs[(env.gcp.project_id, "us-central1", "mlfleet-hybrid-registry-us-central1")]
    job["state"] = "FAILED"  # DMS stopped: the registry no longer reaches the Google standby
    session = boto3.Session()
    primary = env.primary.name
    group = next(b for b in stacks[f"{env.name}-{primary}"]["resource"]["aws_eks_node_group"].values()
                 if b["node_group_name"] == "inference-gpu")
    session.client("eks", region_name=primary).update_nodegroup_config(
        clusterName=f"mlfleet-{env.name}-{primary}", nodegroupName="inference-gpu",
        scalingConfig={"minSize": 0, "maxSize": group["scaling_config"]["max_size"], "desiredSize": 0})
    assert _run_cli("drift", "--env", "hybrid", "--gcp-endpoint", fake_gcp.url, "--format", "json") == 1
    drifts = json.loads(capsys.readouterr().out)
    assert sorted((d["region"], d["attribute"], d["live"]) for d in drifts) == [
        ("us-central1", "state", "FAILED"), (primary, "scaling minimum", "0")]


def test_google_regions_without_credentials_are_a_usage_error(examples, moto_endpoint, monkeypatch, tmp_path):
    from mlfleet.stacks.environment.errors import MlfleetError

    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "none.json"))
    with pytest.raises(MlfleetError, match="no Google credentials to read research") as raised:
        _run_cli("drift", "--env", "research", "--region", "us-east4")
    assert raised.value.exit_code == 2
