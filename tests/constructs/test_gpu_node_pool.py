from __future__ import annotations

import pytest

from mlfleet.constructs.aws.eks_gpu_node_pool import EksGpuNodePool, EksGpuNodePoolProps, Reservation
from mlfleet.constructs.policy import evaluate_terraform
from mlfleet.constructs.validation import PropsError

from helpers.template import only_resource, resources

ACCOUNT = "111111111111"
CLUSTER = "mlfleet-prod-us-east-1"
KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/0123abcd-0000-0000-0000-000000000000"
SUBNETS = ("subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2", "subnet-0aaaaaaaaaaaaaaa3")
CLUSTER_SG = "sg-0123456789abcdef0"
RESERVATION = Reservation.odcr("cr-0123456789abcdef0")
BLOCK = Reservation.capacity_block("cr-0123456789abcdef0")
RESOURCE_GROUP = f"arn:aws:resource-groups:us-east-1:{ACCOUNT}:group/gpu-reservations"
TEMPLATE = "k8s.io/cluster-autoscaler/node-template"


def props(**overrides) -> EksGpuNodePoolProps:
    base = dict(cluster_name=CLUSTER, node_role_arn=f"arn:aws:iam::{ACCOUNT}:role/{CLUSTER}-node",
                subnet_ids=SUBNETS, name="infer-gpu", account_id=ACCOUNT, instance_types=("g6.12xlarge", "g5.12xlarge"),
                gpus_per_node=4, min_size=2, max_size=10, kms_key_arn=KEY)
    return EksGpuNodePoolProps(**{**base, **overrides})


def _pool(synth, **overrides) -> tuple[dict, EksGpuNodePool]:
    built = {}
    tf = synth(lambda stack: built.setdefault("pool", EksGpuNodePool(stack, "pool", props(**overrides))))
    return tf, built["pool"]


def test_standby_pool_is_tainted_imdsv2_encrypted_warm_and_exports_its_sizes(synth):
    tf, pool = _pool(synth, standby=True, warm_size=1, failover_size=6, labels={"mlfleet.io/workload": "inference"})
    group = only_resource(tf, "aws_eks_node_group")
    template = only_resource(tf, "aws_launch_template")

    assert group["ami_type"] == "AL2023_x86_64_NVIDIA" and group["capacity_type"] == "ON_DEMAND"
    assert group["instance_types"] == ["g6.12xlarge", "g5.12xlarge"]
    assert group["taint"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}]
    assert group["labels"] == {"mlfleet.io/workload": "inference"}
    # A standby runs warm; the autoscaler and the runbooks own the desired size after creation.
    assert group["scaling_config"] == {"min_size": 1, "desired_size": 1, "max_size": 10}
    assert group["lifecycle"] == {"ignore_changes": ["scaling_config[0].desired_size"]}
    assert group["launch_template"]["id"].startswith("${aws_launch_template.")
    assert group["launch_template"]["version"].endswith(".latest_version}")

    assert template["metadata_options"] == {"http_endpoint": "enabled", "http_tokens": "required",
                                            "http_put_response_hop_limit": 1, "instance_metadata_tags": "disabled"}
    assert template["block_device_mappings"] == [{"device_name": "/dev/xvda", "ebs": {
        "volume_type": "gp3", "encrypted": "true", "kms_key_id": KEY, "delete_on_termination": "true",
        "volume_size": 200}}]
    assert template["name"] == f"{CLUSTER}-infer-gpu"
    assert resources(tf, "aws_kms_key") == {}  # the given key is used, none is created

    grant = only_resource(tf, "aws_kms_grant")
    assert grant["key_id"] == KEY and grant["grantee_principal"] == (
        f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling")
    assert set(grant["operations"]) == {"CreateGrant", "Decrypt", "DescribeKey", "Encrypt", "GenerateDataKey",
                                        "GenerateDataKeyWithoutPlaintext", "ReEncryptFrom", "ReEncryptTo"}
    assert group["depends_on"] == ["aws_kms_grant.%s" % next(iter(resources(tf, "aws_kms_grant")))]

    template_tags = {f"{TEMPLATE}/label/mlfleet.io/workload": "inference",
                     f"{TEMPLATE}/taint/nvidia.com/gpu": "present:NoSchedule",
                     f"{TEMPLATE}/resources/nvidia.com/gpu": "4"}
    assert group["tags"] == {"k8s.io/cluster-autoscaler/enabled": "true",
                             f"k8s.io/cluster-autoscaler/{CLUSTER}": "owned", **template_tags}
    asg_tags = resources(tf, "aws_autoscaling_group_tag").values()
    assert {t["tag"]["key"]: t["tag"]["value"] for t in asg_tags} == template_tags
    assert {t["autoscaling_group_name"] for t in asg_tags} == {
        "${aws_eks_node_group.%s.resources[0].autoscaling_groups[0].name}"
        % next(iter(resources(tf, "aws_eks_node_group")))}
    assert all(t["tag"]["propagate_at_launch"] is False for t in asg_tags)

    assert tf["output"]["infer_gpu_warm_size"]["value"] == 1
    assert tf["output"]["infer_gpu_failover_size"]["value"] == 6
    assert tf["output"]["infer_gpu_node_group_name"]["value"].endswith(".node_group_name}")
    assert (pool.scaling_minimum, pool.warm_size, pool.failover_size) == (1, 1, 6)
    assert [f for f in evaluate_terraform("test", tf) if f.rule != "MLF006"] == []


def test_serving_pool_runs_its_minimum_with_a_key_of_its_own_and_no_standby_outputs(synth):
    tf, pool = _pool(synth, kms_key_arn=None, capacity_type="SPOT", gpu_taint_value="shared")
    group = only_resource(tf, "aws_eks_node_group")
    assert group["scaling_config"] == {"min_size": 2, "desired_size": 2, "max_size": 10}
    assert group["capacity_type"] == "SPOT"
    assert group["taint"][0]["value"] == "shared"
    assert group["tags"][f"{TEMPLATE}/taint/nvidia.com/gpu"] == "shared:NoSchedule"
    assert only_resource(tf, "aws_kms_alias")["name"] == f"alias/{CLUSTER}-infer-gpu-volumes"
    key_ref = "${aws_kms_key.%s.arn}" % next(iter(resources(tf, "aws_kms_key")))
    assert only_resource(tf, "aws_launch_template")["block_device_mappings"][0]["ebs"]["kms_key_id"] == key_ref
    assert only_resource(tf, "aws_kms_grant")["key_id"] == key_ref
    assert set(tf["output"]) == {"infer_gpu_node_group_name"}
    assert (pool.scaling_minimum, pool.warm_size, pool.failover_size) == (2, None, None)
    assert [f for f in evaluate_terraform("test", tf) if f.rule != "MLF006"] == []


def test_bottlerocket_encrypts_both_its_os_and_data_volumes(synth):
    tf, _ = _pool(synth, ami_type="BOTTLEROCKET_x86_64_NVIDIA", root_volume_size_gib=500)
    volumes = {m["device_name"]: m["ebs"] for m in only_resource(tf, "aws_launch_template")["block_device_mappings"]}
    assert sorted(volumes) == ["/dev/xvda", "/dev/xvdb"]
    assert all(v["encrypted"] == "true" and v["kms_key_id"] == KEY and v["volume_type"] == "gp3"
               for v in volumes.values())
    assert "volume_size" not in volumes["/dev/xvda"] and volumes["/dev/xvdb"]["volume_size"] == 500
    assert only_resource(tf, "aws_eks_node_group")["ami_type"] == "BOTTLEROCKET_x86_64_NVIDIA"


def test_capacity_block_pool_launches_into_its_block_with_the_type_on_the_template(synth):
    tf, _ = _pool(synth, capacity_type="CAPACITY_BLOCK", instance_types=("p5.48xlarge",), gpus_per_node=8,
                  reservation=BLOCK)
    template = only_resource(tf, "aws_launch_template")
    group = only_resource(tf, "aws_eks_node_group")
    assert template["instance_market_options"] == {"market_type": "capacity-block"}
    assert template["capacity_reservation_specification"] == {
        "capacity_reservation_target": {"capacity_reservation_id": "cr-0123456789abcdef0"}}
    assert template["instance_type"] == "p5.48xlarge" and "instance_types" not in group
    assert group["capacity_type"] == "CAPACITY_BLOCK"


def test_on_demand_pool_targets_a_reservation_resource_group(synth):
    tf, _ = _pool(synth, reservation=Reservation.resource_group(RESOURCE_GROUP))
    template = only_resource(tf, "aws_launch_template")
    assert template["capacity_reservation_specification"] == {
        "capacity_reservation_target": {"capacity_reservation_resource_group_arn": RESOURCE_GROUP}}
    assert "instance_market_options" not in template


def test_efa_pool_gets_one_efa_interface_per_network_card_in_a_cluster_placement_group(synth):
    tf, pool = _pool(synth, instance_types=("p5.48xlarge",), gpus_per_node=8, efa_interfaces=32,
                     subnet_ids=SUBNETS[:1], security_group_ids=(CLUSTER_SG,))
    placement = only_resource(tf, "aws_placement_group")
    assert placement["strategy"] == "cluster" and placement["name"] == f"{CLUSTER}-infer-gpu"
    template = only_resource(tf, "aws_launch_template")
    interfaces = template["network_interfaces"]
    assert [i["network_card_index"] for i in interfaces] == list(range(32))
    assert [i["device_index"] for i in interfaces] == [0] + [1] * 31
    assert all(i["interface_type"] == "efa" and i["security_groups"] == [CLUSTER_SG] for i in interfaces)
    assert "vpc_security_group_ids" not in template  # EC2 refuses both forms together
    assert template["placement"]["group_name"].startswith("${aws_placement_group.")
    assert pool.placement_group is not None


def test_security_groups_without_efa_go_on_the_template(synth):
    tf, _ = _pool(synth, security_group_ids=(CLUSTER_SG,))
    template = only_resource(tf, "aws_launch_template")
    assert template["vpc_security_group_ids"] == [CLUSTER_SG] and "network_interfaces" not in template
    assert resources(tf, "aws_placement_group") == {}


def test_pool_created_from_a_cluster_reference_is_ordered_after_the_cluster(synth):
    from mlfleet.constructs.aws.eks_cluster import EksCluster, EksClusterProps

    def build(stack):
        cluster = EksCluster(stack, "cluster", EksClusterProps(name=CLUSTER, account_id=ACCOUNT, region="us-east-1",
                                                               subnet_ids=SUBNETS))
        EksGpuNodePool(stack, "pool", props(cluster_name=cluster.cluster_name, node_role_arn=cluster.node_role_arn,
                                            kms_key_arn=cluster.key.key_arn))

    tf = synth(build)
    cluster_ref = "${aws_eks_cluster.%s.name}" % next(iter(resources(tf, "aws_eks_cluster")))
    group = only_resource(tf, "aws_eks_node_group")
    assert group["cluster_name"] == cluster_ref
    assert group["tags"][f"k8s.io/cluster-autoscaler/{cluster_ref}"] == "owned"
    assert [f for f in evaluate_terraform("test", tf) if f.rule != "MLF006"] == []


@pytest.mark.parametrize("overrides, match", [
    (dict(ami_type="AL2023_x86_64_STANDARD"), r"ami_type: 'AL2023_x86_64_STANDARD' is not an NVIDIA AMI type"),
    (dict(ami_type="AL2_x86_64_GPU"), r"ami_type: 'AL2_x86_64_GPU' is not an NVIDIA AMI type"),
    (dict(efa_interfaces=4, subnet_ids=SUBNETS[:1], security_group_ids=(CLUSTER_SG,), reservation=RESERVATION),
     r"efa_interfaces: conflicts with reservation"),
    (dict(efa_interfaces=4, subnet_ids=SUBNETS[:1], security_group_ids=(CLUSTER_SG,), capacity_type="CAPACITY_BLOCK",
          instance_types=("p5.48xlarge",), reservation=BLOCK),
          r"efa_interfaces: conflicts with capacity_type CAPACITY_BLOCK"),
    (dict(efa_interfaces=4, security_group_ids=(CLUSTER_SG,)), r"subnet_ids: .*one AZ: give exactly one subnet"),
    (dict(efa_interfaces=4, subnet_ids=SUBNETS[:1]), r"security_group_ids: EFA interfaces need a security group"),
    (dict(efa_interfaces=33), r"efa_interfaces: 33 is not between 0 and 32"),
    (dict(capacity_type="CAPACITY_BLOCK", instance_types=("p5.48xlarge",)), r"reservation: a CAPACITY_BLOCK pool"),
    (dict(capacity_type="CAPACITY_BLOCK", reservation=BLOCK),
     r"instance_types: a CAPACITY_BLOCK pool takes exactly one"),
    (dict(capacity_type="CAPACITY_BLOCK", instance_types=("p5.48xlarge",), reservation=RESERVATION),
     r"reservation: a CAPACITY_BLOCK pool launches into its Capacity Block"),
    (dict(reservation=BLOCK), r"reservation: a Capacity Block is for a CAPACITY_BLOCK pool, not ON_DEMAND"),
    (dict(capacity_type="CAPACITY_BLOCK", instance_types=("p5.48xlarge",),
          reservation=Reservation.resource_group(RESOURCE_GROUP)), r"reservation: a CAPACITY_BLOCK pool"),
    (dict(capacity_type="RESERVED"), r"capacity_type: 'RESERVED' is not one of"),
    (dict(capacity_type="SPOT", reservation=RESERVATION), r"reservation: capacity reservations hold on-demand"),
    (dict(reservation=Reservation.odcr("cr-1")), r"'cr-1' is not a capacity reservation id"),
    (dict(reservation=Reservation.resource_group("arn:aws:iam::111111111111:group/x")),
     r"reservation.resource_group_arn: .* is not a resource group ARN"),
    (dict(standby=True, warm_size=3), r"warm_size: 3 is not between 0 and min_size \(2\)"),
    (dict(min_size=11), r"min_size: 11 is not between 0 and max_size \(10\)"),
    (dict(max_size=0, min_size=0), r"max_size: an EKS node group holds at least one node"),
    (dict(standby=True, failover_size=11), r"failover_size: 11 is not between min_size \(2\) and max_size \(10\)"),
    (dict(standby=True, failover_size=1), r"failover_size: 1 is not between min_size \(2\)"),
    (dict(gpus_per_node=0), r"gpus_per_node: a GPU node has at least one GPU"),
    (dict(instance_types=()), r"instance_types: give at least one instance type"),
    (dict(instance_types=("g6.12xlarge", "g6.12xlarge")), r"instance_types: lists a type twice"),
    (dict(instance_types=("G6 large",)), r"instance_types\[0\]: 'G6 large' is not an EC2 instance type"),
    (dict(labels={"bad key!": "x"}), r"labels\['bad key!'\]: is not a Kubernetes label key"),
    (dict(labels={"tier": "x" * 64}), r"labels\['tier'\]: 'x{64}' is not a Kubernetes label value"),
    (dict(gpu_taint_value=""), r"gpu_taint_value: '' is not a taint value"),
    (dict(name="infer gpu"), r"name: 'infer gpu'"),
    (dict(account_id="1"), r"account_id: '1' is not a 12-digit"),
    (dict(root_volume_size_gib=8), r"root_volume_size_gib: must be 16 to 16384 GiB"),
    (dict(kms_key_arn="alias/mine"), r"kms_key_arn: 'alias/mine' is not a KMS key ARN"),
    (dict(volume_key_alias="mine"), r"volume_key_alias: names a key the pool would create, but kms_key_arn is given"),
])
def test_invalid_props_are_rejected_with_the_prop_named(synth, overrides, match):
    with pytest.raises(PropsError, match=match):
        synth(lambda stack: EksGpuNodePool(stack, "pool", props(**overrides)))


def test_a_created_volume_key_needs_an_alias_when_the_cluster_name_is_a_reference(synth):
    from cdktn import TerraformVariable

    def build(stack):
        cluster_name = TerraformVariable(stack, "cluster_name", type="string").string_value
        EksGpuNodePool(stack, "pool", props(cluster_name=cluster_name, kms_key_arn=None))

    with pytest.raises(PropsError, match=r"volume_key_alias: needed to name the pool's volume key"):
        synth(build)


def test_network_cluster_and_efa_pool_synthesize_identically_twice_and_pass_the_policy_pass(synth):
    from mlfleet.constructs.aws.eks_cluster import EksCluster, EksClusterProps
    from mlfleet.constructs.aws.network import FlowLogs, VpcNetwork, VpcNetworkProps

    def build(stack):
        network = VpcNetwork(stack, "network", VpcNetworkProps(
            cidr="10.20.0.0/16", availability_zones=("us-east-1a", "us-east-1b", "us-east-1c"),
            flow_logs=FlowLogs(account_id=ACCOUNT, name_prefix="mlfleet-test-us-east-1")))
        cluster = EksCluster(stack, "cluster", EksClusterProps(name=CLUSTER, account_id=ACCOUNT, region="us-east-1",
                                                               subnet_ids=tuple(network.private_subnet_ids)))
        EksGpuNodePool(stack, "pool", props(cluster_name=cluster.cluster_name, node_role_arn=cluster.node_role_arn,
                                            subnet_ids=tuple(network.private_subnet_ids[:1]),
                                            instance_types=("p5.48xlarge",),
                                            gpus_per_node=8, efa_interfaces=32,
                                            security_group_ids=(cluster.security_group_id,),
                                            kms_key_arn=cluster.key.key_arn))

    first, second = synth(build), synth(build)
    assert first == second
    group = only_resource(first, "aws_eks_node_group")
    assert group["subnet_ids"] == [
        "${aws_subnet.%s.id}" % n for n, s in resources(first, "aws_subnet").items()
        if s["availability_zone"] == "us-east-1a" and s["tags"]["Name"].startswith("mlfleet-private")]
    interfaces = only_resource(first, "aws_launch_template")["network_interfaces"]
    assert interfaces[0]["security_groups"] == [
        "${aws_eks_cluster.%s.vpc_config[0].cluster_security_group_id}" % next(iter(resources(first,
                                                                                              "aws_eks_cluster")))]
    assert [f for f in evaluate_terraform("test", first) if f.rule != "MLF006"] == []


def test_each_reservation_factory_targets_exactly_one_kind_of_capacity():
    # "Give one, not both" cannot be written: each factory takes what its kind needs and nothing else.
    assert (RESERVATION.capacity_reservation_id, RESERVATION.resource_group_arn) == ("cr-0123456789abcdef0", None)
    assert (BLOCK.kind, BLOCK.capacity_reservation_id, BLOCK.resource_group_arn) == (
        "capacity-block", "cr-0123456789abcdef0", None)
    group = Reservation.resource_group(RESOURCE_GROUP)
    assert (group.capacity_reservation_id, group.resource_group_arn) == (None, RESOURCE_GROUP)
