"""Test helper: apply an environment's synthesized intent to a moto server through boto3, as a
`terraform apply` would have (names and settings from the Terraform JSON), so drift tests start
from a platform that matches the code and then change it by hand."""
from __future__ import annotations

import re

from moto.route53.models import HostedZoneIdentifier
from moto.utilities.id_generator import moto_id_manager

from mlfleet.constructs.terraform_json import Body, blocks, sorted_resources

MOTO_ACCOUNT = "123456789012"
SUBNETS = ["subnet-0a", "subnet-0b", "subnet-0c"]
ROLE = f"arn:aws:iam::{MOTO_ACCOUNT}:role/mlfleet-test"


def _for_bucket(tf: dict, rtype: str, logical: str) -> Body:
    """The `rtype` resource whose `bucket` is the bucket with logical id `logical`, or None."""
    return next((b for _, b in sorted_resources(tf, rtype) if b.get("bucket") == f"${{aws_s3_bucket.{logical}.id}}"),
                None)


def apply_intent(env, stacks: dict[str, dict], session) -> None:
    for region in env.regions:
        tf = stacks[f"{env.name}-{region.name}"]
        _apply_buckets(tf, session.client("s3", region_name=region.name), region.name)
        _apply_eks(tf, session.client("eks", region_name=region.name))
    _apply_registry(env, stacks, session)
    _apply_routing(stacks[f"{env.name}-global"], session.client("route53", region_name="us-east-1"))


def _apply_buckets(tf: dict, s3, region: str) -> None:
    for logical, body in sorted_resources(tf, "aws_s3_bucket"):
        name = body["bucket"]
        extra = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        s3.create_bucket(Bucket=name, **extra)
        versioning = _for_bucket(tf, "aws_s3_bucket_versioning", logical)
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={
            "Status": blocks(versioning["versioning_configuration"])[0]["status"]})
        key = f"arn:aws:kms:{region}:{MOTO_ACCOUNT}:key/test"
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": [{
            "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}}]})
        block = _for_bucket(tf, "aws_s3_bucket_public_access_block", logical)
        s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration={
            "BlockPublicAcls": block["block_public_acls"], "IgnorePublicAcls": block["ignore_public_acls"],
            "BlockPublicPolicy": block["block_public_policy"],
            "RestrictPublicBuckets": block["restrict_public_buckets"]})
        replication = _for_bucket(tf, "aws_s3_bucket_replication_configuration", logical)
        if replication:
            s3.put_bucket_replication(Bucket=name, ReplicationConfiguration={"Role": ROLE, "Rules": [
                _replication_rule(rule) for rule in blocks(replication["rule"])]})


def _replication_rule(rule: dict) -> dict:
    target = blocks(rule["destination"])[0]
    destination = {"Bucket": target["bucket"]}
    if blocks(target.get("replication_time")):
        destination["ReplicationTime"] = {"Status": blocks(target["replication_time"])[0]["status"],
                                          "Time": {"Minutes": 15}}
    if blocks(target.get("metrics")):
        destination["Metrics"] = {"Status": blocks(target["metrics"])[0]["status"], "EventThreshold": {"Minutes": 15}}
    return {"ID": rule["id"], "Priority": rule["priority"], "Status": rule["status"], "Filter": {},
            "DeleteMarkerReplication": {"Status": "Enabled"}, "Destination": destination}


def _apply_eks(tf: dict, eks) -> None:
    for _, cluster in sorted_resources(tf, "aws_eks_cluster"):
        eks.create_cluster(name=cluster["name"], roleArn=ROLE, resourcesVpcConfig={"subnetIds": SUBNETS})
        for _, group in sorted_resources(tf, "aws_eks_node_group"):
            scaling = blocks(group["scaling_config"])[0]
            eks.create_nodegroup(
                clusterName=cluster["name"], nodegroupName=group["node_group_name"], amiType=group["ami_type"],
                instanceTypes=group["instance_types"], capacityType=group["capacity_type"], nodeRole=ROLE,
                subnets=SUBNETS, labels=group.get("labels") or {},
                taints=[{"key": t["key"], "value": t["value"], "effect": t["effect"]}
                        for t in blocks(group.get("taint"))],
                scalingConfig={"minSize": scaling["min_size"], "maxSize": scaling["max_size"],
                               "desiredSize": scaling["desired_size"]})


def _apply_registry(env, stacks: dict[str, dict], session) -> None:
    for _, body in sorted_resources(stacks[f"{env.name}-global"], "aws_rds_global_cluster"):
        session.client("rds", region_name=env.primary.name).create_global_cluster(
            GlobalClusterIdentifier=body["global_cluster_identifier"], Engine=body["engine"],
            EngineVersion=body["engine_version"], StorageEncrypted=True)
    for region in [env.primary, *env.standbys]:
        for _, cluster in sorted_resources(stacks[f"{env.name}-{region.name}"], "aws_rds_cluster"):
            extra = {"MasterUsername": "registry", "MasterUserPassword": "not-a-secret-1"} \
                if region is env.primary else {}
            session.client("rds", region_name=region.name).create_db_cluster(
                DBClusterIdentifier=cluster["cluster_identifier"], Engine=cluster["engine"],
                EngineVersion=cluster["engine_version"], GlobalClusterIdentifier=cluster["global_cluster_identifier"],
                StorageEncrypted=True, **extra)


def _apply_routing(tf: dict, route53) -> None:
    records = sorted_resources(tf, "aws_route53_record")
    zone_id = records[0][1]["zone_id"]
    zone_name = min((b["name"] for _, b in records), key=len).split(".", 1)[1] + "."
    # The zone keeps the id the environment file names, as the real one does.
    moto_id_manager.set_custom_id(HostedZoneIdentifier(MOTO_ACCOUNT, zone_name, None), zone_id)
    route53.create_hosted_zone(Name=zone_name, CallerReference="mlfleet-test")
    check_ids = {}
    reference = re.compile(r"^\$\{aws_route53_health_check\.([^.]+)\.id\}$")
    # Endpoint and routing-control checks first: the calculated ones name them as children.
    for logical, check in sorted(sorted_resources(tf, "aws_route53_health_check"),
                                 key=lambda item: item[1]["type"] == "CALCULATED"):
        if check["type"] == "CALCULATED":
            config = {"Type": "CALCULATED", "HealthThreshold": check["child_health_threshold"],
                      "ChildHealthChecks": [check_ids[reference.match(c).group(1)]
                                            for c in check["child_healthchecks"]]}
        elif check["type"] == "RECOVERY_CONTROL":
            config = {"Type": "RECOVERY_CONTROL", "RoutingControlArn": check["routing_control_arn"]}
        else:
            config = {"Type": check["type"], "FullyQualifiedDomainName": check["fqdn"], "Port": check["port"],
                      "ResourcePath": check["resource_path"], "SearchString": check["search_string"],
                      "RequestInterval": check["request_interval"], "FailureThreshold": check["failure_threshold"]}
        check_ids[logical] = route53.create_health_check(CallerReference=logical,
                                                         HealthCheckConfig=config)["HealthCheck"]["Id"]
    changes = []
    for _, body in records:
        record = {"Name": body["name"], "Type": body["type"], "SetIdentifier": body["set_identifier"]}
        if body.get("failover_routing_policy"):
            record["Failover"] = body["failover_routing_policy"]["type"]
        if body.get("weighted_routing_policy"):
            record["Weight"] = body["weighted_routing_policy"]["weight"]
        if body.get("alias"):
            record["AliasTarget"] = {"HostedZoneId": body["alias"]["zone_id"], "DNSName": body["alias"]["name"],
                                     "EvaluateTargetHealth": body["alias"]["evaluate_target_health"]}
        else:
            record["TTL"] = body["ttl"]
            record["ResourceRecords"] = [{"Value": v} for v in body["records"]]
        reference = re.match(r"^\$\{aws_route53_health_check\.([^.]+)\.id\}$", body.get("health_check_id") or "")
        if reference:
            record["HealthCheckId"] = check_ids[reference.group(1)]
        changes.append({"Action": "CREATE", "ResourceRecordSet": record})
    route53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": changes})
