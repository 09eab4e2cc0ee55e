"""`mlfleet drift` against a moto server seeded with prod's synthesized intent, then changed by
hand: a node group scaled, replication removed, a record edited."""
from __future__ import annotations

import argparse
import json

import boto3
import pytest

from live_platform import apply_intent
from mlfleet.stacks.review.cli import register
from mlfleet.stacks.review.drift import detect_drift
from review_fixtures import examples  # noqa: F401 - fixture


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
    session.client("s3", region_name="us-east-1").delete_bucket_replication(Bucket="mlfleet-prod-333333333333-us-east-1")
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
    from mlfleet.stacks.errors import MlfleetError

    with pytest.raises(MlfleetError, match="no region 'eu-west-1'") as raised:
        _run_cli("drift", "--env", "prod", "--region", "eu-west-1")
    assert raised.value.exit_code == 2


def test_google_cloud_scopes_are_a_usage_error(examples, moto_endpoint):
    from mlfleet.stacks.errors import MlfleetError

    env = examples["hybrid"][0]
    for scope in [r.name for r in env.regions_on("gcp")] + ["gcp-global"]:
        with pytest.raises(MlfleetError, match="drift reads AWS regions only") as raised:
            _run_cli("drift", "--env", "hybrid", "--region", scope)
        assert raised.value.exit_code == 2 and "Google Cloud" in str(raised.value)


def test_whole_cross_cloud_environment_reads_aws_and_names_what_it_skipped(deployed_hybrid, capsys):
    env, stacks = deployed_hybrid
    gcp = [r.name for r in env.regions_on("gcp")]
    assert _run_cli("drift", "--env", "hybrid") == 0
    out = capsys.readouterr().out
    assert "no drift" in out and all(name in out.splitlines()[-1] for name in gcp)
    assert f"{env.name}-gcp-global" in out
    session = boto3.Session()
    primary = env.primary.name
    group = next(b for b in stacks[f"{env.name}-{primary}"]["resource"]["aws_eks_node_group"].values()
                 if b["node_group_name"] == "inference-gpu")
    session.client("eks", region_name=primary).update_nodegroup_config(
        clusterName=f"mlfleet-{env.name}-{primary}", nodegroupName="inference-gpu",
        scalingConfig={"minSize": 0, "maxSize": group["scaling_config"]["max_size"], "desiredSize": 0})
    drifts = detect_drift(env, stacks, session)
    assert [(d.region, d.attribute) for d in drifts] == [(primary, "scaling minimum")]
    assert _run_cli("drift", "--env", "hybrid", "--format", "json") == 1
    captured = capsys.readouterr()
    assert [d["region"] for d in json.loads(captured.out)] == [primary] and gcp[0] in captured.err
