"""Creates an environment's resources in the sandbox through boto3, as if its stacks were
deployed: the names come from `mlfleet.stacks.environment.naming`, the shapes from the constructs (a
replicated artifact bucket per region, an Aurora global registry, an EKS cluster with one node
group per GPU pool, failover (or weighted) records with a health check per region, a DR lock table, the
runtime image's ECR repository, the multi-region key that signs the champion manifest). Only the
AWS regions get AWS resources; the failover records and health checks cover every region (Route 53
routes Google Cloud regions too). Google Cloud regions are gcp_world.py's."""
from __future__ import annotations

from mlfleet.stacks.environment import Environment, naming, routing_control

FAILOVER_OK_TOKEN = "MLFLEET_FAILOVER_OK"
ROLE_ARN = "arn:aws:iam::{account}:role/{name}"


def deploy(env: Environment, client, serving_ports: dict[str, int]) -> dict:
    """Create everything; return the ids a deployment would output (zone id, health checks)."""
    account = env.aws.account_id
    primary = env.primary
    for region in env.regions_on("aws"):
        _bucket(env, client("s3", region.name), region.name)
        _cluster(env, client("eks", region.name), region.name, primary=region is primary)
        _lock_table(env, client("dynamodb", region.name))
        _image_repository(env, client("ecr", region.name))
    signing_key = None
    if primary.cloud == "aws":
        _replication(env, client("s3", primary.name))
        _registry(env, client)
        signing_key = _signing_key(env, client)
    zone_id, checks = _routing(env, client("route53", "us-east-1"), serving_ports)
    return {"account_id": account, "hosted_zone_id": zone_id, "health_checks": checks,
            "signing_key_id": signing_key}


def aws_standbys(env: Environment) -> list:
    return [s for s in env.standbys if s.cloud == "aws"]


def _bucket(env: Environment, s3, region: str) -> None:
    name = naming.artifact_bucket(env.name, env.aws.account_id, region)
    kwargs = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    # Object Lock as the stacks enable it, so the audit log's anchors are locked here too.
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=env.artifact_store.object_lock is not None, **kwargs)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True})


def _replication(env: Environment, s3) -> None:
    account = env.aws.account_id
    rules = [{"ID": f"to-{standby.name}", "Status": "Enabled", "Priority": index, "Filter": {},
              "DeleteMarkerReplication": {"Status": "Disabled"},
              "Destination": {"Bucket": f"arn:aws:s3:::{naming.artifact_bucket(env.name, account, standby.name)}"}}
             for index, standby in enumerate(aws_standbys(env), start=1)]
    if rules:
        s3.put_bucket_replication(
            Bucket=naming.artifact_bucket(env.name, account, env.primary.name),
            ReplicationConfiguration={"Role": ROLE_ARN.format(account=account, name=naming.role_name(
                env.name, env.primary.name, "replication")), "Rules": rules})


def _cluster(env: Environment, eks, region: str, *, primary: bool) -> None:
    account = env.aws.account_id
    cluster = naming.cluster_name(env.name, region)
    eks_role = ROLE_ARN.format(account=account, name=naming.role_name(env.name, region, "eks"))
    eks.create_cluster(name=cluster, roleArn=eks_role,
                       resourcesVpcConfig={"subnetIds": ["subnet-0a", "subnet-0b", "subnet-0c"]})
    for pool in env.gpu_pools:
        size = pool.min_size if primary else pool.warm_standby
        eks.create_nodegroup(
            clusterName=cluster, nodegroupName=naming.node_group_name(pool.name), amiType=pool.ami_type,
            instanceTypes=pool.instance_types, capacityType=pool.capacity_type,
            nodeRole=ROLE_ARN.format(account=account, name=naming.role_name(env.name, region, "nodes")),
            subnets=["subnet-0a", "subnet-0b", "subnet-0c"], labels=pool.labels or {},
            scalingConfig={"minSize": size, "maxSize": pool.max_size, "desiredSize": size})


def _image_repository(env: Environment, ecr) -> None:
    # AES256, not the environment's KMS key: moto's account holds no such key (see SANDBOX.md).
    ecr.create_repository(repositoryName=naming.image_repository(env.name, env.serving.image.name),
                          imageTagMutability="IMMUTABLE", imageScanningConfiguration={"scanOnPush": True},
                          encryptionConfiguration={"encryptionType": "AES256"})


def _lock_table(env: Environment, dynamodb) -> None:
    dynamodb.create_table(TableName=naming.dr_lock_table(env.name), BillingMode="PAY_PER_REQUEST",
                          KeySchema=[{"AttributeName": naming.DR_LOCK_KEY, "KeyType": "HASH"}],
                          AttributeDefinitions=[{"AttributeName": naming.DR_LOCK_KEY, "AttributeType": "S"}])


def _registry(env: Environment, client) -> None:
    database = env.registry_database
    global_id = naming.global_cluster_id(env.name)
    client("rds", env.primary.name).create_global_cluster(
        GlobalClusterIdentifier=global_id, Engine="aurora-postgresql", EngineVersion=database.engine_version,
        StorageEncrypted=True, DeletionProtection=True)
    for region in [env.primary, *aws_standbys(env)]:
        extra = ({"MasterUsername": "registry", "ManageMasterUserPassword": True} if region is env.primary else {})
        client("rds", region.name).create_db_cluster(
            DBClusterIdentifier=naming.db_cluster_id(env.name, region.name), Engine="aurora-postgresql",
            EngineVersion=database.engine_version, GlobalClusterIdentifier=global_id, StorageEncrypted=True,
            **extra)


def _signing_key(env: Environment, client) -> str:
    """The manifest-signing key as the primary's stack makes it: multi-region ECC_NIST_P256 in the
    primary, a replica and the same alias in every standby. Returns the key id (one for all)."""
    alias = f"alias/{naming.manifest_signing_key_alias(env.name)}"
    kms = client("kms", env.primary.name)
    key = kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec="ECC_NIST_P256", MultiRegion=True,
                         Description=f"mlfleet {env.name}: signs the champion manifest")["KeyMetadata"]
    kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
    for standby in aws_standbys(env):
        kms.replicate_key(KeyId=key["KeyId"], ReplicaRegion=standby.name)
        standby_kms = client("kms", standby.name)
        # moto keeps aliases per account, not per region: one alias may already name the key there.
        if not any(a["AliasName"] == alias for a in standby_kms.list_aliases()["Aliases"]):
            standby_kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
    return key["KeyId"]


def _routing(env: Environment, route53, serving_ports: dict[str, int]) -> tuple[str, dict[str, str]]:
    serving = env.serving
    zone_name = serving.dns_name.split(".", 1)[1]
    zone_id = route53.create_hosted_zone(Name=zone_name, CallerReference=f"mlfleet-{env.name}")["HostedZone"]["Id"]
    zone_id = zone_id.rsplit("/", 1)[-1]
    checks = {}
    for region in env.regions:
        # HTTP, not HTTPS: the sandbox runtimes serve plain HTTP on loopback.
        checks[region.name] = route53.create_health_check(
            CallerReference=f"mlfleet-{env.name}-{region.name}",
            HealthCheckConfig={"Type": "HTTP_STR_MATCH", "IPAddress": "127.0.0.1", "Port": serving_ports[region.name],
                               "ResourcePath": serving.failover_health_path,
                               "FullyQualifiedDomainName": env.endpoint(region),
                               "SearchString": FAILOVER_OK_TOKEN, "RequestInterval": serving.health_check_interval,
                               "FailureThreshold": serving.health_check_failure_threshold})["HealthCheck"]["Id"]

    def cname(name: str, region, **routing) -> dict:
        return {"Action": "CREATE", "ResourceRecordSet": {
            "Name": name, "Type": "CNAME", "TTL": serving.record_ttl, "SetIdentifier": region.name,
            "ResourceRecords": [{"Value": env.endpoint(region)}], "HealthCheckId": checks[region.name], **routing}}

    if serving.routing == "weighted":  # every region an equal share, as the global stack deploys them
        changes = [cname(serving.dns_name, r, Weight=routing_control.WEIGHT) for r in env.regions]
        route53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": changes})
        return zone_id, checks
    changes = [cname(serving.dns_name, env.primary, Failover="PRIMARY")]
    if len(env.standbys) == 1:
        changes.append(cname(serving.dns_name, env.standbys[0], Failover="SECONDARY"))
    elif env.standbys:
        standby_name = f"standby.{serving.dns_name}"
        changes += [cname(standby_name, s, Weight=100) for s in env.standbys]
        changes.append({"Action": "CREATE", "ResourceRecordSet": {
            "Name": serving.dns_name, "Type": "CNAME", "SetIdentifier": "standbys", "Failover": "SECONDARY",
            "AliasTarget": {"HostedZoneId": zone_id, "DNSName": standby_name, "EvaluateTargetHealth": True}}})
    route53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": changes})
    return zone_id, checks
