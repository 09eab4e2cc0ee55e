from __future__ import annotations

import pytest

from mlfleet.constructs.aws.eks_system_node_pool import EksSystemNodePool, EksSystemNodePoolProps
from mlfleet.constructs.policy import evaluate_terraform
from mlfleet.constructs.validation import PropsError

from helpers.template import only_resource, resources

ACCOUNT = "111111111111"
CLUSTER = "mlfleet-prod-us-east-1"
KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/0123abcd-0000-0000-0000-000000000000"
SUBNETS = ("subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2", "subnet-0aaaaaaaaaaaaaaa3")


def props(**overrides) -> EksSystemNodePoolProps:
    base = dict(cluster_name=CLUSTER, node_role_arn=f"arn:aws:iam::{ACCOUNT}:role/{CLUSTER}-node",
                subnet_ids=SUBNETS, account_id=ACCOUNT)
    return EksSystemNodePoolProps(**{**base, **overrides})


def test_defaults_are_an_untainted_on_demand_pool_of_two_on_a_standard_ami_imdsv2_and_encrypted(synth):
    from cdktn import TerraformOutput

    def build(stack):
        pool = EksSystemNodePool(stack, "system", props(kms_key_arn=KEY))
        TerraformOutput(stack, "system_nodes", value=pool.node_group_name).override_logical_id("system_nodes")

    tf = synth(build)
    group = only_resource(tf, "aws_eks_node_group")
    template = only_resource(tf, "aws_launch_template")

    assert "taint" not in group
    assert group["ami_type"] == "AL2023_x86_64_STANDARD" and group["capacity_type"] == "ON_DEMAND"
    assert group["instance_types"] == ["m7i.large", "m6i.large"]
    assert group["node_group_name"] == "system" and group["subnet_ids"] == list(SUBNETS)
    assert group["labels"] == {"mlfleet.io/node-role": "system"}
    assert group["scaling_config"] == {"min_size": 2, "desired_size": 2, "max_size": 4}
    assert group["lifecycle"] == {"ignore_changes": ["scaling_config[0].desired_size"]}
    assert group["tags"] == {"k8s.io/cluster-autoscaler/enabled": "true",
                             f"k8s.io/cluster-autoscaler/{CLUSTER}": "owned"}
    assert group["launch_template"]["id"].startswith("${aws_launch_template.")
    assert group["launch_template"]["version"].endswith(".latest_version}")

    assert template["metadata_options"] == {"http_endpoint": "enabled", "http_tokens": "required",
                                            "http_put_response_hop_limit": 1, "instance_metadata_tags": "disabled"}
    assert template["block_device_mappings"] == [{"device_name": "/dev/xvda", "ebs": {
        "volume_type": "gp3", "encrypted": "true", "kms_key_id": KEY, "delete_on_termination": "true",
        "volume_size": 50}}]
    assert template["name"] == f"{CLUSTER}-system"
    assert {s["resource_type"]: s["tags"] for s in template["tag_specifications"]}["instance"] == {
        "Name": f"{CLUSTER}-system", "mlfleet:pool": "system"}
    assert resources(tf, "aws_kms_key") == {}  # the given key is used, none is created

    grant = only_resource(tf, "aws_kms_grant")
    assert grant["key_id"] == KEY and grant["grantee_principal"] == (
        f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling")
    assert group["depends_on"] == ["aws_kms_grant.%s" % next(iter(resources(tf, "aws_kms_grant")))]
    # A reference, not the plain name: what uses it is ordered after the node group.
    assert tf["output"]["system_nodes"]["value"] == (
        "${aws_eks_node_group.%s.node_group_name}" % next(iter(resources(tf, "aws_eks_node_group"))))
    assert [f for f in evaluate_terraform("test", tf) if f.rule != "MLF006"] == []


def test_bottlerocket_pool_with_a_key_of_its_own_encrypts_both_volumes(synth):
    tf = synth(lambda stack: EksSystemNodePool(stack, "system", props(
        ami_type="BOTTLEROCKET_x86_64", min_size=3, max_size=6, root_volume_size_gib=80,
        labels={"tier": "system"}, tags={"team": "platform"})))
    group = only_resource(tf, "aws_eks_node_group")
    assert group["ami_type"] == "BOTTLEROCKET_x86_64" and "taint" not in group
    assert group["scaling_config"] == {"min_size": 3, "desired_size": 3, "max_size": 6}
    assert group["labels"] == {"tier": "system"} and group["tags"]["team"] == "platform"
    assert only_resource(tf, "aws_kms_alias")["name"] == f"alias/{CLUSTER}-system-volumes"
    key_ref = "${aws_kms_key.%s.arn}" % next(iter(resources(tf, "aws_kms_key")))
    volumes = {m["device_name"]: m["ebs"] for m in only_resource(tf, "aws_launch_template")["block_device_mappings"]}
    assert sorted(volumes) == ["/dev/xvda", "/dev/xvdb"]
    assert all(v["encrypted"] == "true" and v["kms_key_id"] == key_ref and v["volume_type"] == "gp3"
               for v in volumes.values())
    assert "volume_size" not in volumes["/dev/xvda"] and volumes["/dev/xvdb"]["volume_size"] == 80
    assert only_resource(tf, "aws_kms_grant")["key_id"] == key_ref


def test_cluster_with_system_and_gpu_pools_passes_the_policy_pass(synth):
    from mlfleet.constructs.aws.eks_cluster import EksCluster, EksClusterProps
    from mlfleet.constructs.aws.eks_gpu_node_pool import EksGpuNodePool, EksGpuNodePoolProps

    def build(stack):
        cluster = EksCluster(stack, "cluster", EksClusterProps(name=CLUSTER, account_id=ACCOUNT, region="us-east-1",
                                                               subnet_ids=SUBNETS))
        EksSystemNodePool(stack, "system", props(cluster_name=cluster.cluster_name, node_role_arn=cluster.node_role_arn,
                                                 kms_key_arn=cluster.key.key_arn))
        EksGpuNodePool(stack, "gpu", EksGpuNodePoolProps(
            cluster_name=cluster.cluster_name, node_role_arn=cluster.node_role_arn, subnet_ids=SUBNETS,
            name="infer-gpu", account_id=ACCOUNT, instance_types=("g6e.12xlarge",), gpus_per_node=4, max_size=8,
            kms_key_arn=cluster.key.key_arn))

    tf = synth(build)
    groups = {g["node_group_name"]: g for g in resources(tf, "aws_eks_node_group").values()}
    assert "taint" not in groups["system"] and groups["infer-gpu"]["taint"][0]["key"] == "nvidia.com/gpu"
    cluster_ref = "${aws_eks_cluster.%s.name}" % next(iter(resources(tf, "aws_eks_cluster")))
    assert groups["system"]["cluster_name"] == cluster_ref
    assert len({t["name"] for t in resources(tf, "aws_launch_template").values()}) == 2
    assert [f for f in evaluate_terraform("test", tf) if f.rule != "MLF006"] == []


@pytest.mark.parametrize("overrides, match", [
    (dict(ami_type="AL2023_x86_64_NVIDIA"), r"ami_type: 'AL2023_x86_64_NVIDIA' is a GPU AMI type: .*GpuNodePool"),
    (dict(ami_type="BOTTLEROCKET_x86_64_NVIDIA"), r"ami_type: 'BOTTLEROCKET_x86_64_NVIDIA' is a GPU AMI type"),
    (dict(ami_type="AL2023_ARM_64_STANDARD"), r"ami_type: 'AL2023_ARM_64_STANDARD' is not a system node AMI type"),
    (dict(instance_types=("m7i.large", "g6e.xlarge")), r"instance_types\[1\]: 'g6e.xlarge' is a GPU instance type"),
    (dict(instance_types=("m7g.large",)), r"instance_types\[0\]: 'm7g.large' is an Arm \(Graviton\) instance type"),
    (dict(instance_types=()), r"instance_types: give at least one instance type"),
    (dict(instance_types=("m7i large",)), r"instance_types\[0\]: 'm7i large' is not an EC2 instance type"),
    (dict(min_size=0), r"min_size: the cluster's add-ons need at least one system node"),
    (dict(min_size=5), r"max_size: 4 is below min_size \(5\)"),
    (dict(subnet_ids=()), r"subnet_ids: give at least one subnet"),
    (dict(subnet_ids=SUBNETS[:1] * 2), r"subnet_ids: lists a subnet twice"),
    (dict(node_role_arn="my-node-role"), r"node_role_arn: 'my-node-role' is not an IAM role ARN"),
    (dict(name="system nodes"), r"name: 'system nodes'"),
    (dict(account_id="1"), r"account_id: '1' is not a 12-digit"),
    (dict(labels={"bad key!": "x"}), r"labels\['bad key!'\]: is not a Kubernetes label key"),
    (dict(root_volume_size_gib=8), r"root_volume_size_gib: must be 16 to 16384 GiB"),
    (dict(kms_key_arn="alias/mine"), r"kms_key_arn: 'alias/mine' is not a KMS key ARN"),
    (dict(kms_key_arn=KEY, volume_key_alias="mine"), r"volume_key_alias: names a key the pool would create"),
])
def test_invalid_props_are_rejected_with_the_prop_named(synth, overrides, match):
    with pytest.raises(PropsError, match=match):
        synth(lambda stack: EksSystemNodePool(stack, "system", props(**overrides)))
