"""Whole-environment checks on the synthesized JSON of every example environment: one stack
per region plus a global one, failure domains kept apart, everything secure by default, and
output that is reproducible on any machine."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mlfleet.stacks.app import synthesize
from mlfleet.stacks.environment import environment_names, load_environment, naming

from helpers.template import resources

REGION = re.compile(r"\b(?:us|eu|ap|sa|ca|me|af|il)-[a-z]+-\d\b")




def test_one_stack_per_region_plus_global(synthesized):
    expected = {"dev-us-east-2", "dev-global",
                "staging-us-east-1", "staging-us-west-2", "staging-global",
                "prod-us-east-1", "prod-us-west-2", "prod-us-east-2", "prod-global",
                "hybrid-us-east-1", "hybrid-us-central1", "hybrid-global", "hybrid-gcp-global",
                "research-us-central1", "research-us-east4", "research-global", "research-gcp-global"}
    # Each region's serving plane is a stack of its own, applied after the region's.
    expected |= {f"{name}-serving" for name in expected if not name.endswith("-global")}
    assert set(synthesized.stacks) == expected
    for name in expected:
        assert (synthesized.outdir / "stacks" / name / "cdk.tf.json").is_file()


def test_regional_stacks_keep_to_their_region(synthesized):
    for name, tf in synthesized.stacks.items():
        assert "terraform_remote_state" not in json.dumps(tf.get("data", {})), name
        if name.endswith("-global") or "s3" not in tf["terraform"]["backend"]:
            continue  # global stacks, and Google Cloud regions (tests/stacks/test_gcp_stacks.py)
        region = name.split("-", 1)[1].removesuffix("-serving")
        backend = tf["terraform"]["backend"]["s3"]
        assert backend["region"] == region and backend["bucket"].endswith(region)
        assert backend["encrypt"] is True and backend["use_lockfile"] is True
        default, *aliased = tf["provider"]["aws"]
        assert default["region"] == region and "alias" not in default
        # The primary's stack replicates the manifest signing key to each AWS standby through one
        # aliased provider per standby, and uses those providers for nothing else.
        assert {p["alias"]: p["region"] for p in aliased} == {p["region"]: p["region"] for p in aliased}
        for p in aliased:
            assert p["allowed_account_ids"] == default["allowed_account_ids"]
            assert p["default_tags"] == default["default_tags"]
        through_aliases = {rtype for rtype, items in tf["resource"].items() for body in items.values()
                           if "provider" in body}
        assert through_aliases <= {"aws_kms_replica_key", "aws_kms_alias"}, name
        # Other regions appear only as deterministic names (replica buckets and their key
        # aliases, the review roles that may sign, on the primary), never as state of another region.
        for rtype, items in tf["resource"].items():
            for rid, body in items.items():
                for other in set(REGION.findall(json.dumps(body))) - {region}:
                    assert rtype in {"aws_s3_bucket_replication_configuration", "aws_iam_role_policy",
                                     "aws_cloudwatch_metric_alarm", "aws_ecr_replication_configuration",
                                     "aws_kms_key", "aws_kms_replica_key", "aws_kms_alias"}, \
                        (name, rtype, rid, other)
                if "provider" in body:  # a replica of the signing key, or its alias, in another region
                    assert body["provider"] != f"aws.{region}" and body["provider"].removeprefix("aws.") in {
                        p["region"] for p in aliased}, (name, rid)


def test_global_state_survives_the_primary(synthesized):
    prod = synthesized.stacks["prod-global"]["terraform"]["backend"]["s3"]
    assert prod["region"] == "us-west-2"  # the first standby, not the primary us-east-1
    assert synthesized.stacks["dev-global"]["terraform"]["backend"]["s3"]["region"] == "us-east-2"


def test_every_bucket_encrypted_and_private(synthesized):
    for name, tf in synthesized.stacks.items():
        buckets = resources(tf, "aws_s3_bucket")
        encryption = resources(tf, "aws_s3_bucket_server_side_encryption_configuration")
        blocks = resources(tf, "aws_s3_bucket_public_access_block")
        for bid in buckets:
            ref = f"${{aws_s3_bucket.{bid}.id}}"
            enc = [e for e in encryption.values() if e["bucket"] == ref]
            default = enc[0]["rule"][0]["apply_server_side_encryption_by_default"] if enc else {}
            assert default.get("sse_algorithm") == "aws:kms", name
            pab = [b for b in blocks.values() if b["bucket"] == ref]
            assert pab and all(pab[0][k] is True for k in ("block_public_acls", "block_public_policy",
                                                          "ignore_public_acls", "restrict_public_buckets"))
            assert buckets[bid].get("force_destroy") in (None, False)


def test_every_database_protected(synthesized):
    clusters = [(n, c) for n, tf in synthesized.stacks.items() for c in resources(tf, "aws_rds_cluster").values()]
    aws_regions = [r for n in environment_names() for r in load_environment(n).regions_on("aws")]
    assert len(clusters) == len(aws_regions) == 7  # one per AWS region
    for name, cluster in clusters:
        assert cluster["deletion_protection"] is True and cluster["storage_encrypted"] is True, name
        assert cluster["kms_key_id"] and cluster["backup_retention_period"] >= 7
        assert cluster["skip_final_snapshot"] is False
    for tf in synthesized.stacks.values():
        for instance in resources(tf, "aws_rds_cluster_instance").values():
            assert instance["publicly_accessible"] is False


def test_every_aws_region_has_the_lock_table_the_runbooks_lock_in(synthesized):
    """The runbooks lock in the region they move traffic to (`Target.lock`), by the table's name
    and partition key: the stacks, the lock (dr/locks.py) and the sandbox take both from naming."""
    for env in (load_environment(n) for n in environment_names()):
        for region in env.regions_on("aws"):
            tables = list(resources(synthesized.stacks[f"{env.name}-{region.name}"], "aws_dynamodb_table").values())
            if len(env.regions) == 1:  # no runbook to lock
                assert tables == [], env.name
                continue
            assert [t["name"] for t in tables] == [naming.dr_lock_table(env.name)], (env.name, region.name)
            table = tables[0]
            assert table["hash_key"] == naming.DR_LOCK_KEY and table["billing_mode"] == "PAY_PER_REQUEST"
            assert table["attribute"] == [{"name": naming.DR_LOCK_KEY, "type": "S"}]
            assert table["server_side_encryption"]["enabled"] is True and table["server_side_encryption"]["kms_key_arn"]
            assert table["point_in_time_recovery"]["enabled"] is True and table["deletion_protection_enabled"] is True


def test_every_gpu_pool_tainted_and_standbys_warm(synthesized):
    prod = load_environment("prod")
    pools = {p.name: p for p in prod.gpu_pools}
    def gpu_groups(tf):
        return [g for g in resources(tf, "aws_eks_node_group").values() if g["node_group_name"].endswith("-gpu")]

    for name, tf in synthesized.stacks.items():
        groups = resources(tf, "aws_eks_node_group").values()
        system = [g for g in groups if not g["node_group_name"].endswith("-gpu")]
        if not name.endswith(("-global", "-serving")) and "aws" in tf["provider"]:
            assert len(system) == 1 and "taint" not in system[0], name  # add-ons run untainted
        for group in gpu_groups(tf):
            taints = group["taint"]
            assert {"key": "nvidia.com/gpu", "effect": "NO_SCHEDULE"}.items() <= taints[0].items(), name
            assert group["ami_type"] in ("AL2023_x86_64_NVIDIA", "BOTTLEROCKET_x86_64_NVIDIA")
    for region in prod.regions:
        tf = synthesized.stacks[f"prod-{region.name}"]
        for group in gpu_groups(tf):
            pool = pools[group["node_group_name"].removesuffix("-gpu")]
            scaling = group["scaling_config"]
            expected = pool.min_size if region.role == "primary" else pool.warm_standby
            assert scaling["desired_size"] == expected and scaling["max_size"] == pool.max_size


def test_primary_replicates_to_every_standby_with_rtc(synthesized):
    tf = synthesized.stacks["prod-us-east-1"]
    (config,) = resources(tf, "aws_s3_bucket_replication_configuration").values()
    destinations = {r["destination"]["bucket"]: r for r in config["rule"]}
    assert set(destinations) == {"arn:aws:s3:::mlfleet-prod-333333333333-us-west-2",
                                 "arn:aws:s3:::mlfleet-prod-333333333333-us-east-2"}
    for rule in destinations.values():
        assert rule["destination"]["replication_time"]["status"] == "Enabled"
        assert rule["destination"]["metrics"]["status"] == "Enabled"
        assert rule["delete_marker_replication"]["status"] == "Enabled"
    for standby in ("prod-us-west-2", "prod-us-east-2"):
        assert not resources(synthesized.stacks[standby], "aws_s3_bucket_replication_configuration")


def test_routing_probes_each_region(synthesized):
    tf = synthesized.stacks["prod-global"]
    checks = {k: c for k, c in resources(tf, "aws_route53_health_check").items() if "fqdn" in c}  # endpoints
    assert {c["fqdn"] for c in checks.values()} == {
        "us-east-1.models.example.com", "us-west-2.models.example.com", "us-east-2.models.example.com"}
    for check in checks.values():
        assert check["type"] == "HTTPS_STR_MATCH" and check["request_interval"] == 10
        assert check["resource_path"] == "/v2/health/failover"
    assert len(resources(tf, "aws_rds_global_cluster")) == 1


def test_output_is_reproducible(synthesized, tmp_path):
    text = "".join(p.read_text() for p in sorted(synthesized.outdir.rglob("*.json")))
    assert str(synthesized.outdir) not in text and str(Path.home()) not in text
    assert not re.search(r"20\d\d-\d\d-\d\dT\d\d:\d\d", text), "no timestamps"
    again = synthesize([load_environment("dev"), load_environment("hybrid")], tmp_path / "again")
    for name in ("dev-us-east-2", "dev-global", "hybrid-us-east-1", "hybrid-us-central1", "hybrid-gcp-global"):
        first = (synthesized.outdir / "stacks" / name / "cdk.tf.json").read_text()
        assert (again.outdir / "stacks" / name / "cdk.tf.json").read_text() == first


def test_unacknowledged_finding_fails_synth_and_writes_nothing(tmp_path, monkeypatch):
    from cdktn_provider_aws.s3_bucket import S3Bucket

    from mlfleet.stacks import app as app_module
    from mlfleet.stacks import regional_stack

    original = regional_stack.RegionalStack.__init__

    def with_scratch_bucket(self, scope, env, region):
        original(self, scope, env, region)
        S3Bucket(self, "scratch", bucket=f"scratch-{region.name}")  # unencrypted, not private

    monkeypatch.setattr(regional_stack.RegionalStack, "__init__", with_scratch_bucket)
    outdir = tmp_path / "cdktf.out"
    with pytest.raises(app_module.PolicyViolation) as info:
        synthesize([load_environment("dev")], outdir)
    rules = {(f.rule, f.path) for f in info.value.findings}
    assert rules == {("MLF001", "dev-us-east-2/scratch"), ("MLF002", "dev-us-east-2/scratch")}
    assert not outdir.exists() and not list(tmp_path.iterdir())


def test_cli_synth_prints_a_summary_per_stack(tmp_path, capsys):
    from mlfleet.stacks.cli import main

    assert main(["synth", "--env", "prod", "--outdir", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "Synthesized 7 stacks" in out
    assert "prod-us-east-1" in out and "prod-global" in out
    assert re.search(r"gpu pool inference-gpu: g6e\.2xlarge/g6e\.4xlarge on_demand, 1 GPU/node, "
                     r"nodes min 4 desired 4 max 16", out)
    assert re.search(r"gpu pool inference-gpu: .* min 2 desired 2 max 16", out)  # a warm standby
    assert "bucket mlfleet-prod-333333333333-us-west-2" in out
    assert "database mlfleet-prod-registry (global)" in out
    assert re.search(r"runtime mlfleet-runtime-inference: 2 pod\(s\) x 1 GPU on inference-gpu, image "
                     r"333333333333\.dkr\.ecr\.us-west-2\.amazonaws\.com/mlfleet-prod/runtime@sha256:[0-9a-f]{64}", out)
    assert "dns us-west-2.models.example.com" in out and "${" not in out


def test_efa_pool_gets_one_zone_a_placement_group_and_the_cluster_security_group(tmp_path):
    import yaml

    from mlfleet.stacks.environment import ENVIRONMENTS_DIR, parse_environment

    data = yaml.safe_load((ENVIRONMENTS_DIR / "dev.yaml").read_text())
    data["gpu_pools"].append({"name": "training", "instance_types": ["p5.48xlarge"], "min_size": 0,
                              "warm_standby": 0, "max_size": 2, "efa_interfaces": 32})
    result = synthesize([parse_environment(data, "dev+efa")], tmp_path / "out")
    tf = result.stacks["dev-us-east-2"]
    group = next(g for g in resources(tf, "aws_eks_node_group").values() if g["node_group_name"] == "training-gpu")
    assert len(group["subnet_ids"]) == 1
    (placement,) = resources(tf, "aws_placement_group").values()
    assert placement["strategy"] == "cluster"
    template = next(t for t in resources(tf, "aws_launch_template").values() if "training" in t["name"])
    interfaces = template["network_interfaces"]
    assert len(interfaces) == 32 and {i["interface_type"] for i in interfaces} == {"efa"}
    assert all(len(i["security_groups"]) == 1 and "cluster_security_group_id" in i["security_groups"][0]
               for i in interfaces)
