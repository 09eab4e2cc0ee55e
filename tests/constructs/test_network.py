from __future__ import annotations

import ipaddress
import json

import pytest

from mlfleet.constructs.acknowledgements import acknowledgements_for
from mlfleet.constructs.aws.network import (
    ExistingNetwork,
    FlowLogs,
    VpcNetwork,
    VpcNetworkProps,
    endpoint_policy,
    plan_subnets,
)
from mlfleet.constructs.policy import evaluate_terraform
from mlfleet.constructs.validation import PropsError

from helpers.iam import allowed
from helpers.template import only_resource, resources

ZONES = ("us-east-1a", "us-east-1b", "us-east-1c")
ACCOUNT = "111111111111"


def _by_zone(tf: dict, tier: str) -> dict[str, dict]:
    return {s["availability_zone"]: s for s in resources(tf, "aws_subnet").values()
            if s["tags"]["Name"].startswith(f"mlfleet-{tier}-")}


def _ref(resource_type: str, tf: dict, body: dict) -> str:
    """The Terraform reference `${type.name.id}` to one resource of a synthesized stack."""
    name = next(n for n, b in resources(tf, resource_type).items() if b is body)
    return f"${{{resource_type}.{name}.id}}"


def test_created_network_is_private_per_az_with_nat_and_endpoints_and_passes_the_policy_pass(synth):
    built = {}
    tf = synth(lambda stack: built.setdefault("net", VpcNetwork(stack, "net", VpcNetworkProps(
        cidr="10.20.0.0/16", availability_zones=ZONES))))
    net = built["net"]

    private, public = _by_zone(tf, "private"), _by_zone(tf, "public")
    assert sorted(private) == sorted(public) == sorted(ZONES)
    assert [private[z]["cidr_block"] for z in ZONES] == ["10.20.0.0/18", "10.20.64.0/18", "10.20.128.0/18"]
    assert [public[z]["cidr_block"] for z in ZONES] == ["10.20.192.0/26", "10.20.192.64/26", "10.20.192.128/26"]
    assert all(s["map_public_ip_on_launch"] is False for s in resources(tf, "aws_subnet").values())
    assert net.cidr == "10.20.0.0/16" and len(net.private_subnet_ids) == 3

    # One NAT gateway per AZ, each private route table routes through its own AZ's gateway.
    nats = resources(tf, "aws_nat_gateway")
    assert len(nats) == 3
    nat_zone = {f"${{aws_nat_gateway.{n}.id}}": next(z for z,
                                                     s in public.items() if b["subnet_id"] == _ref("aws_subnet", tf, s))
                for n, b in nats.items()}
    default_routes = [r for r in resources(tf, "aws_route").values() if "nat_gateway_id" in r]
    tables = {f"${{aws_route_table.{n}.id}}": b["tags"]["Name"] for n, b in resources(tf, "aws_route_table").items()}
    assert sorted((tables[r["route_table_id"]], nat_zone[r["nat_gateway_id"]]) for r in default_routes) == [
        (f"mlfleet-private-{z}", z) for z in ZONES]

    endpoints = {e["service_name"]: e for e in resources(tf, "aws_vpc_endpoint").values()}
    assert endpoints["com.amazonaws.us-east-1.s3"]["vpc_endpoint_type"] == "Gateway"
    assert len(endpoints["com.amazonaws.us-east-1.s3"]["route_table_ids"]) == 3
    for service in ("ecr.api", "ecr.dkr", "sts"):
        endpoint = endpoints[f"com.amazonaws.us-east-1.{service}"]
        assert endpoint["vpc_endpoint_type"] == "Interface" and endpoint["private_dns_enabled"] is True
        assert len(endpoint["subnet_ids"]) == 3 and len(endpoint["security_group_ids"]) == 1
    ingress = only_resource(tf, "aws_vpc_security_group_ingress_rule")
    assert (ingress["cidr_ipv4"], ingress["from_port"], ingress["to_port"]) == ("10.20.0.0/16", 443, 443)
    assert "ingress" not in only_resource(tf, "aws_security_group")
    assert only_resource(tf, "aws_default_security_group")["ingress"] == []

    # Without flow logs the pack's one finding is MLF044: the stacks always give them (or a reason).
    assert [f.rule for f in evaluate_terraform("test", tf) if f.rule != "MLF006"] == ["MLF044"]
    public_subnet = net.node.find_child("public-us-east-1a")
    reason = acknowledgements_for(public_subnet, "MLF002")[0].reason
    assert "NAT gateway" in reason and "map_public_ip_on_launch" in reason


def test_single_nat_gateway_serves_every_az(synth):
    tf = synth(lambda stack: VpcNetwork(stack, "net", VpcNetworkProps(
        cidr="10.30.0.0/20", availability_zones=ZONES + ("us-east-1d",), nat_gateways="single")))
    nat_id = f"${{aws_nat_gateway.{next(iter(resources(tf, 'aws_nat_gateway')))}.id}}"
    nat_routes = [r["nat_gateway_id"] for r in resources(tf, "aws_route").values() if "nat_gateway_id" in r]
    assert nat_routes == [nat_id] * 4
    assert len(resources(tf, "aws_eip")) == 1


def test_flow_logs_go_to_an_encrypted_log_group_through_a_scoped_role(synth):
    tf = synth(lambda stack: VpcNetwork(stack, "net", VpcNetworkProps(
        cidr="10.20.0.0/16", availability_zones=ZONES, interface_endpoints=("ecr.api", "ecr.dkr", "sts", "eks-auth"),
        flow_logs=FlowLogs(account_id=ACCOUNT, name_prefix="mlfleet-prod-us-east-1", retention_days=90))))
    group = only_resource(tf, "aws_cloudwatch_log_group")
    assert group["name"] == "/mlfleet/mlfleet-prod-us-east-1/vpc-flow-logs"
    assert group["retention_in_days"] == 90 and group["kms_key_id"].startswith("${aws_kms_key.")
    key_policy = json.loads(only_resource(tf, "aws_kms_key")["policy"])
    assert key_policy["Statement"][1]["Principal"] == {"Service": ["logs.us-east-1.amazonaws.com"]}
    flow = only_resource(tf, "aws_flow_log")
    assert flow["traffic_type"] == "ALL" and flow["log_destination_type"] == "cloud-watch-logs"
    policy = json.loads(only_resource(tf, "aws_iam_role_policy")["policy"])
    log_group_arn = f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/mlfleet/mlfleet-prod-us-east-1/vpc-flow-logs"
    assert policy["Statement"] == [{
        "Sid": "DeliverToLogGroup", "Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
        "Resource": [log_group_arn, f"{log_group_arn}:log-stream:*"]}]
    trust = json.loads(only_resource(tf, "aws_iam_role")["assume_role_policy"])["Statement"][0]
    assert trust["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT},
                                  "ArnLike": {"aws:SourceArn": f"arn:aws:ec2:us-east-1:{ACCOUNT}:vpc-flow-log/*"}}
    services = {e["service_name"] for e in resources(tf, "aws_vpc_endpoint").values()}
    assert "com.amazonaws.us-east-1.eks-auth" in services
    assert [f for f in evaluate_terraform("test", tf) if f.rule != "MLF006"] == []


def test_existing_network_creates_nothing_and_exposes_its_ids(synth):
    built = {}
    existing = ExistingNetwork(vpc_id="vpc-0123456789abcdef0", cidr="10.40.0.0/16",
                               private_subnet_ids=("subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2"))
    tf = synth(lambda stack: built.setdefault("net", VpcNetwork(stack, "net", VpcNetworkProps(existing=existing))))
    assert tf.get("resource", {}) == {}
    net = built["net"]
    assert (net.vpc_id, net.private_subnet_ids, net.cidr) == (
        "vpc-0123456789abcdef0", ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2"], "10.40.0.0/16")


@pytest.mark.parametrize("cidr, zones", [("10.0.0.0/16", 3), ("10.0.0.0/20", 6), ("172.16.0.0/20", 7), ("10.8.0.0/18",
                                                                                                        5)])
def test_subnet_plan_is_disjoint_inside_the_cidr_with_large_private_subnets(cidr, zones):
    plan = plan_subnets(cidr, zones)
    network = ipaddress.ip_network(cidr)
    subnets = plan.private + plan.public
    assert len(plan.private) == len(plan.public) == zones
    assert all(s.subnet_of(network) for s in subnets)
    assert all(not a.overlaps(b) for i, a in enumerate(subnets) for b in subnets[i + 1:])
    assert all(p.num_addresses >= 8 * q.num_addresses for p in plan.private for q in plan.public)
    assert plan_subnets(cidr, zones) == plan


def test_subnet_plan_refuses_public_subnets_below_a_28():
    with pytest.raises(ValueError, match="too small for 16 AZs"):
        plan_subnets("10.0.0.0/20", 16)


NETWORK = dict(cidr="10.20.0.0/16", availability_zones=ZONES)
EXISTING = ExistingNetwork(vpc_id="vpc-0123456789abcdef0", cidr="10.40.0.0/16",
                           private_subnet_ids=("subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2"))


@pytest.mark.parametrize("props, match", [
    (dict(cidr="10.20.0.0/16", availability_zones=ZONES[:2]), r"availability_zones: needs at least 3 AZs"),
    (dict(cidr="10.20.0.0/16", availability_zones=("us-east-1a", "us-east-1b", "us-west-2a")),
     r"availability_zones: AZs of one region only"),
    (dict(cidr="10.20.0.0/16", availability_zones=("us-east-1a", "us-east-1a", "us-east-1b")), "lists an AZ twice"),
    (dict(cidr="10.20.0.0/16", availability_zones=("us-east-1", "us-east-1b", "us-east-1c")),
     r"availability_zones\[0\]: 'us-east-1' is not an AZ name"),
    (dict(cidr="8.8.0.0/16", availability_zones=ZONES), r"cidr: 8.8.0.0/16 is not a private IPv4 range"),
    (dict(cidr="10.20.0.1/16", availability_zones=ZONES), r"cidr: '10.20.0.1/16' is not a network CIDR"),
    (dict(cidr="10.20.0.0/24", availability_zones=ZONES), r"cidr: 10.20.0.0/24: use a /16 to /20"),
    (dict(availability_zones=ZONES), r"cidr: give the CIDR"),
    (dict(**NETWORK, nat_gateways="none"), r"nat_gateways: 'none' is not 'per_az' or 'single'"),
    (dict(**NETWORK, interface_endpoints=("s3",)), r"interface_endpoints\[0\]: 's3' is not one of ecr.api"),
    (dict(**NETWORK, interface_endpoints=("ssm",)), r"interface_endpoints\[0\]: 'ssm' is not one of .* gets a policy"),
    (dict(**NETWORK, account_id="12345"), r"account_id: '12345' is not a 12-digit AWS account id"),
    (dict(**NETWORK, s3_buckets=("Bad_Bucket",)), r"s3_buckets\[0\]: 'Bad_Bucket' is not an S3 bucket name"),
    (dict(existing=EXISTING, account_id=ACCOUNT), r"net: account_id: an existing network is imported as it is"),
    (dict(**NETWORK, flow_logs=FlowLogs(account_id="1234", name_prefix="p")), r"flow_logs.account_id: '1234'"),
    (dict(**NETWORK, flow_logs=FlowLogs(account_id=ACCOUNT, name_prefix="p", retention_days=100)),
     r"flow_logs.retention_days: 100 is not a CloudWatch Logs retention"),
    (dict(existing=EXISTING, cidr="10.20.0.0/16"), r"net: cidr: an existing network is imported as it is"),
    (dict(existing=ExistingNetwork(vpc_id="vpc-1", cidr="10.40.0.0/16",
                                   private_subnet_ids=EXISTING.private_subnet_ids)),
     r"existing.vpc_id: 'vpc-1' is not a VPC id"),
    (dict(existing=ExistingNetwork(vpc_id=EXISTING.vpc_id, cidr="10.40.0.0/16",
                                   private_subnet_ids=("subnet-0aaaaaaaaaaaaaaa1",))),
     r"existing.private_subnet_ids: EKS needs private subnets in at least two AZs"),
    (dict(existing=ExistingNetwork(vpc_id=EXISTING.vpc_id, cidr="10.40.0.0/16", private_subnet_ids=("subnet-1",
                                                                                                    "subnet-2"))),
     r"existing.private_subnet_ids\[0\]: 'subnet-1' is not a subnet id"),
])
def test_invalid_props_are_rejected_with_the_prop_named(synth, props, match):
    with pytest.raises(PropsError, match=match):
        synth(lambda stack: VpcNetwork(stack, "net", VpcNetworkProps(**props)))


def _endpoint_policies(tf: dict) -> dict[str, dict]:
    return {e["service_name"].rsplit(".", 2)[-1] if e["service_name"].endswith(".s3")
            else e["service_name"].split("us-east-1.", 1)[1]: json.loads(e["policy"])
            for e in resources(tf, "aws_vpc_endpoint").values()}


def test_every_endpoint_has_a_policy_of_what_the_vpc_needs_for_the_account_principals_only(synth):
    tf = synth(lambda stack: VpcNetwork(stack, "net", VpcNetworkProps(
        cidr="10.20.0.0/16", availability_zones=ZONES, account_id=ACCOUNT, s3_buckets=("mlfleet-prod-artifacts",),
        interface_endpoints=("ecr.api", "ecr.dkr", "sts", "eks-auth"))))
    policies = _endpoint_policies(tf)
    assert sorted(policies) == ["ecr.api", "ecr.dkr", "eks-auth", "s3", "sts"]
    for service, policy in policies.items():
        for statement in policy["Statement"]:
            assert statement["Effect"] == "Allow" and "*" not in json.dumps(statement["Action"]), service
            if statement.get("Sid") in ("EcrImageLayers", "AmazonLinuxRepositories"):
                # Presigned (ECR's credentials) or unsigned reads: held by their AWS-owned buckets alone.
                assert "Condition" not in statement and statement["Action"] == "s3:GetObject"
                continue
            # Every other statement is held to this account: its principals, or (web identity) its roles.
            condition = statement["Condition"]["StringEquals"]
            assert ACCOUNT in (condition.get("aws:PrincipalAccount"), condition.get("aws:ResourceAccount")), service

    s3 = {s["Sid"]: s for s in policies["s3"]["Statement"]}
    assert s3["EcrImageLayers"]["Resource"] == "arn:aws:s3:::prod-us-east-1-starport-layer-bucket/*"
    assert s3["AmazonLinuxRepositories"]["Action"] == "s3:GetObject"
    assert s3["EnvironmentBuckets"]["Resource"] == ["arn:aws:s3:::mlfleet-prod-artifacts",
                                                    "arn:aws:s3:::mlfleet-prod-artifacts/*"]
    assert policies["ecr.api"] == policies["ecr.dkr"]
    ecr = {s["Sid"]: s for s in policies["ecr.api"]["Statement"]}
    assert ecr["AccountRepositories"]["Resource"] == f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/*"
    assert ecr["EksAddOnImages"]["Resource"] == "arn:aws:ecr:us-east-1:602401143452:repository/*"
    assert set(ecr["EksAddOnImages"]["Action"]) == {"ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage",
                                                    "ecr:GetDownloadUrlForLayer"}
    sts = {s["Sid"]: s for s in policies["sts"]["Statement"]}
    assert sts["WebIdentityIntoAccountRoles"]["Resource"] == f"arn:aws:iam::{ACCOUNT}:role/*"
    assert [f.rule for f in evaluate_terraform("test", tf) if f.rule != "MLF006"] == ["MLF044"]  # no flow logs


def test_endpoint_policies_can_be_evaluated_to_admit_the_account_and_refuse_others():
    """The policies as IAM evaluates them: the account's node pulls an add-on image and reads its bucket;
    another account's credentials, or a bucket outside the environment, are refused."""
    s3 = endpoint_policy("s3", "af-south-1", ACCOUNT, ("mlfleet-dev-artifacts",))
    ours = {"aws:PrincipalAccount": ACCOUNT}
    assert allowed(s3, "s3:GetObject", "arn:aws:s3:::mlfleet-dev-artifacts/models/m.pt", ours)
    assert allowed(s3, "s3:GetObject", "arn:aws:s3:::prod-af-south-1-starport-layer-bucket/layer", ours)
    assert not allowed(s3, "s3:PutObject", "arn:aws:s3:::somebody-elses-bucket/x", ours)
    assert not allowed(s3, "s3:GetObject", "arn:aws:s3:::mlfleet-dev-artifacts/models/m.pt",
                        {"aws:PrincipalAccount": "999999999999"})
    # Image layers come by URLs ECR presigns (ECR's account), packages unsigned: those reads pass on
    # the AWS-owned buckets only.
    ecr_service = {"aws:PrincipalAccount": "999999999999"}
    assert allowed(s3, "s3:GetObject", "arn:aws:s3:::prod-af-south-1-starport-layer-bucket/layer", ecr_service)
    assert allowed(s3, "s3:GetObject", "arn:aws:s3:::al2023-repos-af-south-1-de612dc2/repodata/repomd.xml", {})
    assert not allowed(s3, "s3:GetObject", "arn:aws:s3:::mlfleet-dev-artifacts/models/m.pt", {})
    ecr = endpoint_policy("ecr.dkr", "af-south-1", ACCOUNT)
    # af-south-1 serves the EKS add-on images from a registry of its own.
    assert allowed(ecr, "ecr:BatchGetImage", "arn:aws:ecr:af-south-1:877085696533:repository/eks/coredns", ours)
    assert not allowed(ecr, "ecr:PutImage", "arn:aws:ecr:af-south-1:877085696533:repository/eks/coredns", ours)
    assert not allowed(ecr, "ecr:BatchGetImage", "arn:aws:ecr:af-south-1:999999999999:repository/x", ours)
    sts = endpoint_policy("sts", "af-south-1", ACCOUNT)
    role = f"arn:aws:iam::{ACCOUNT}:role/mlfleet-dev-af-south-1-review"
    assert allowed(sts, "sts:AssumeRole", role, {**ours, "aws:ResourceAccount": ACCOUNT})
    assert not allowed(sts, "sts:AssumeRole", "arn:aws:iam::999999999999:role/x",
                       {**ours, "aws:ResourceAccount": "999999999999"})
    # A pod's web identity (not yet anyone's principal) into the account's roles only.
    assert allowed(sts, "sts:AssumeRoleWithWebIdentity", role, {"aws:ResourceAccount": ACCOUNT})


def test_without_an_account_the_endpoint_policies_name_the_account_terraform_runs_as(synth):
    tf = synth(lambda stack: VpcNetwork(stack, "net", VpcNetworkProps(cidr="10.20.0.0/16", availability_zones=ZONES)))
    statements = [st for p in _endpoint_policies(tf).values() for st in p["Statement"] if "Condition" in st]
    assert statements and all("${data.aws_caller_identity." in json.dumps(st["Condition"]) for st in statements)
