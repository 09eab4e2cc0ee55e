"""One region's network: a VPC with private subnets per AZ, NAT egress and VPC endpoints, or
the ids of an existing network (then nothing is created).

Subnets are carved from the CIDR by a fixed rule, so the same props always give the same
subnets: the CIDR is split into the smallest power of two of equal blocks that is more than
the number of AZs; block `i` is AZ `i`'s private subnet (large: EKS's VPC CNI gives every pod
a VPC address) and the last block holds the small public subnets, which exist only for the
NAT gateways and the serving endpoint's load balancer. The blocks in between stay free for later use.

Every VPC endpoint has a policy of what the VPC's workloads need of it (`endpoint_policy`), never the
default full access: only the account's principals, on the account's resources and the AWS-owned ones
EKS nodes need.
"""
from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from cdktn_provider_aws.cloudwatch_log_group import CloudwatchLogGroup
from cdktn_provider_aws.data_aws_caller_identity import DataAwsCallerIdentity
from cdktn_provider_aws.default_security_group import DefaultSecurityGroup
from cdktn_provider_aws.eip import Eip
from cdktn_provider_aws.flow_log import FlowLog
from cdktn_provider_aws.iam_role import IamRole
from cdktn_provider_aws.iam_role_policy import IamRolePolicy
from cdktn_provider_aws.internet_gateway import InternetGateway
from cdktn_provider_aws.nat_gateway import NatGateway
from cdktn_provider_aws.route import Route
from cdktn_provider_aws.route_table import RouteTable
from cdktn_provider_aws.route_table_association import RouteTableAssociation
from cdktn_provider_aws.security_group import SecurityGroup
from cdktn_provider_aws.subnet import Subnet
from cdktn_provider_aws.vpc import Vpc
from cdktn_provider_aws.vpc_endpoint import VpcEndpoint
from cdktn_provider_aws.vpc_security_group_ingress_rule import VpcSecurityGroupIngressRule
from constructs import Construct

from mlfleet.constructs.acknowledgements import acknowledge
from mlfleet.constructs.aws.iam_policy import policy_document
from mlfleet.constructs.aws.kms_key import KmsKey, KmsKeyProps
from mlfleet.constructs.service_limits import CLOUDWATCH_LOG_RETENTION_DAYS
from mlfleet.constructs.validation import (
    ACCOUNT_ID,
    AVAILABILITY_ZONE,
    NETWORK_NAME,
    S3_BUCKET_NAME,
    SUBNET_ID,
    VPC_ID,
    PropsError,
    require,
)

MIN_AVAILABILITY_ZONES = 3
# A public subnet holds one NAT gateway's interface; AWS keeps 5 addresses of every subnet.
_PUBLIC_PREFIX_MIN, _PUBLIC_PREFIX_MAX = 26, 28


@dataclass(frozen=True, kw_only=True)
class ExistingNetwork:
    """A network made elsewhere: its ids are used as they are and nothing is created."""
    vpc_id: str
    private_subnet_ids: tuple[str, ...]
    cidr: str
    """The VPC's CIDR (security groups of other constructs allow traffic from it)."""


@dataclass(frozen=True, kw_only=True)
class FlowLogs:
    """VPC flow logs to a KMS-encrypted CloudWatch log group."""
    account_id: str
    name_prefix: str
    """Names the log group (`/mlfleet/<prefix>/vpc-flow-logs`), the delivery role and the key
    alias (`<prefix>-flow-logs`); IAM is global, so include the region, e.g. `mlfleet-prod-us-east-1`."""
    retention_days: int = 365
    """Days CloudWatch keeps the flow logs; default `365`."""
    traffic_type: Literal["ACCEPT", "REJECT", "ALL"] = "ALL"
    """`ALL`, `ACCEPT` or `REJECT` traffic; default `ALL`."""


@dataclass(frozen=True, kw_only=True)
class VpcNetworkProps:
    cidr: str | None = None
    """Private IPv4 range of the VPC to create, e.g. `10.20.0.0/16`. Default: none."""
    availability_zones: tuple[str, ...] = ()
    """AZ names of one region (at least three), e.g. `("us-east-1a", "us-east-1b", "us-east-1c")`. Default: none."""
    nat_gateways: Literal["per_az", "single"] = "per_az"
    """`per_az` keeps egress up when an AZ fails; `single` is cheaper and shares one AZ's fate. Default: `per_az`."""
    interface_endpoints: tuple[str, ...] = ("ecr.api", "ecr.dkr", "sts")
    """Services reached through interface endpoints with private DNS (`com.amazonaws.<region>.<name>`), of
    `INTERFACE_ENDPOINT_SERVICES`. Default: `ecr.api, ecr.dkr, sts`."""
    flow_logs: FlowLogs | None = None
    """VPC flow logs to CloudWatch. Default none, which the rule pack refuses (MLF044) unless the stack
    acknowledges it with a reason: the stacks always give them (the environment's `network.flow_logs`)."""
    account_id: str | None = None
    """The account whose principals, repositories and roles the VPC endpoints admit (their policies); default
    the account Terraform runs as."""
    s3_buckets: tuple[str, ...] = ()
    """Buckets of this account that workloads reach through the S3 gateway endpoint (besides what EKS nodes
    need, always admitted); default none."""
    existing: ExistingNetwork | None = None
    """Import this network instead of creating one (then give no other network props). Default: none."""
    name: str = "mlfleet"
    """Name tag prefix of the created resources. Default: `mlfleet`."""
    tags: dict[str, str] = field(default_factory=dict)
    """AWS tags on the construct's resources; default none."""

    @classmethod
    def create(cls, *, cidr: str, availability_zones: tuple[str, ...], **options: Any) -> VpcNetworkProps:
        """A VPC to create over these AZs; `options` are the other props of a created network."""
        return cls(cidr=cidr, availability_zones=availability_zones, **options)

    @classmethod
    def import_existing(cls, existing: ExistingNetwork) -> VpcNetworkProps:
        """A network made elsewhere, used as it is: nothing is created, so no other prop applies."""
        return cls(existing=existing)


class VpcNetwork(Construct):
    """A private, multi-AZ VPC for GPU clusters, or an imported one (see module docstring)."""

    def __init__(self, scope: Construct, id_: str, props: VpcNetworkProps):
        super().__init__(scope, id_)
        if props.existing is not None:
            _validate_existing(self, props)
            self.vpc_id = props.existing.vpc_id
            self.private_subnet_ids = list(props.existing.private_subnet_ids)
            self.cidr = props.existing.cidr
            self.region: str | None = None
            self.private_subnet_cidrs: list[str] = []
            self.public_subnet_ids: list[str] = []
            return

        self.region = _validate_created(self, props)
        assert props.cidr is not None  # validated above
        plan = plan_subnets(props.cidr, len(props.availability_zones))
        self.cidr = str(ipaddress.ip_network(props.cidr))
        self.private_subnet_cidrs = [str(n) for n in plan.private]
        tags = dict(props.tags)

        def named(name: str, extra: dict[str, str] | None = None) -> dict[str, str]:
            return {**tags, "Name": f"{props.name}-{name}", **(extra or {})}

        self.vpc = Vpc(self, "vpc", cidr_block=self.cidr, enable_dns_support=True,
                       enable_dns_hostnames=True, tags=named("vpc"))
        self.vpc_id = self.vpc.id
        # The default security group is attached to anything launched without one: leave it
        # with no rules so that a forgotten security group means no traffic, not open traffic.
        DefaultSecurityGroup(self, "default-security-group", vpc_id=self.vpc_id, ingress=[], egress=[],
                             tags=named("default-deny"))

        igw = InternetGateway(self, "internet-gateway", vpc_id=self.vpc_id, tags=named("igw"))
        public_routes = RouteTable(self, "public-routes", vpc_id=self.vpc_id, tags=named("public"))
        Route(self, "public-default-route", route_table_id=public_routes.id,
              destination_cidr_block="0.0.0.0/0", gateway_id=igw.id)

        public_subnets, nat_ids = [], []
        for i, zone in enumerate(props.availability_zones):
            subnet = Subnet(self, f"public-{zone}", vpc_id=self.vpc_id, availability_zone=zone,
                            cidr_block=str(plan.public[i]), map_public_ip_on_launch=False,
                            # The serving endpoint's internet-facing NLB lands here (the load balancer
                            # controller finds the subnets by this tag).
                            tags=named(f"public-{zone}", {"kubernetes.io/role/elb": "1"}))
            acknowledge(subnet, "MLF002", "public subnet holds only a NAT gateway and the serving endpoint's "
                        "load balancer nodes; instances launched here get no public IP "
                        "(map_public_ip_on_launch is false)")
            RouteTableAssociation(self, f"public-{zone}-routes", subnet_id=subnet.id,
                                  route_table_id=public_routes.id)
            public_subnets.append(subnet)
            if props.nat_gateways == "per_az" or i == 0:
                eip = Eip(self, f"nat-{zone}-address", domain="vpc", tags=named(f"nat-{zone}"))
                nat = NatGateway(self, f"nat-{zone}", allocation_id=eip.allocation_id, subnet_id=subnet.id,
                                 connectivity_type="public", tags=named(f"nat-{zone}"), depends_on=[igw])
                nat_ids.append(nat.id)
        self.public_subnet_ids = [s.id for s in public_subnets]

        private_subnets, private_routes = [], []
        for i, zone in enumerate(props.availability_zones):
            subnet = Subnet(self, f"private-{zone}", vpc_id=self.vpc_id, availability_zone=zone,
                            cidr_block=self.private_subnet_cidrs[i], map_public_ip_on_launch=False,
                            # Internal load balancers for in-cluster services land here.
                            tags=named(f"private-{zone}", {"kubernetes.io/role/internal-elb": "1"}))
            routes = RouteTable(self, f"private-{zone}-routes", vpc_id=self.vpc_id, tags=named(f"private-{zone}"))
            Route(self, f"private-{zone}-default-route", route_table_id=routes.id,
                  destination_cidr_block="0.0.0.0/0",
                  nat_gateway_id=nat_ids[i if props.nat_gateways == "per_az" else 0])
            RouteTableAssociation(self, f"private-{zone}-routes-association", subnet_id=subnet.id,
                                  route_table_id=routes.id)
            private_subnets.append(subnet)
            private_routes.append(routes)
        self.private_subnet_ids = [s.id for s in private_subnets]
        self.private_route_table_ids = [r.id for r in private_routes]

        account = props.account_id or DataAwsCallerIdentity(self, "account").account_id
        # Image layers come from S3: a gateway endpoint keeps those pulls off the NAT gateways.
        VpcEndpoint(self, "s3-endpoint", vpc_id=self.vpc_id, vpc_endpoint_type="Gateway",
                    service_name=f"com.amazonaws.{self.region}.s3", route_table_ids=self.private_route_table_ids,
                    policy=endpoint_policy("s3", self.region, account, props.s3_buckets), tags=named("s3"))
        self.endpoint_security_group = SecurityGroup(
            self, "endpoint-security-group", name=f"{props.name}-vpc-endpoints", vpc_id=self.vpc_id,
            description="HTTPS from inside the VPC to its interface endpoints", tags=named("vpc-endpoints"))
        VpcSecurityGroupIngressRule(self, "endpoint-https-from-vpc", security_group_id=self.endpoint_security_group.id,
                                    ip_protocol="tcp", from_port=443, to_port=443, cidr_ipv4=self.cidr,
                                    description="HTTPS from the VPC")
        for service in props.interface_endpoints:
            VpcEndpoint(self, f"{service.replace('.', '-')}-endpoint", vpc_id=self.vpc_id,
                        vpc_endpoint_type="Interface", service_name=f"com.amazonaws.{self.region}.{service}",
                        private_dns_enabled=True, subnet_ids=self.private_subnet_ids,
                        security_group_ids=[self.endpoint_security_group.id],
                        policy=endpoint_policy(service, self.region, account), tags=named(service))

        if props.flow_logs is not None:
            self._flow_logs(props.flow_logs, tags)

    def _flow_logs(self, flow: FlowLogs, tags: dict[str, str]) -> None:
        key = KmsKey(self, "flow-logs-key", KmsKeyProps(
            alias=f"{flow.name_prefix}-flow-logs", account_id=flow.account_id,
            description=f"mlfleet VPC flow logs of {flow.name_prefix}",
            service_principals=(f"logs.{self.region}.amazonaws.com",), tags=tags))
        log_group_name = f"/mlfleet/{flow.name_prefix}/vpc-flow-logs"
        log_group = CloudwatchLogGroup(self, "flow-logs", name=log_group_name, kms_key_id=key.key_arn,
                                       retention_in_days=flow.retention_days, tags=tags or None)
        log_group_arn = f"arn:aws:logs:{self.region}:{flow.account_id}:log-group:{log_group_name}"
        role = IamRole(self, "flow-logs-role", name=f"{flow.name_prefix}-flow-logs",
                       description="VPC flow log delivery", tags=tags or None,
                       assume_role_policy=policy_document([{
                           "Effect": "Allow", "Principal": {"Service": "vpc-flow-logs.amazonaws.com"},
                           "Action": "sts:AssumeRole",
                           # Only this account's flow logs deliver through the role (confused deputy).
                           "Condition": {"StringEquals": {"aws:SourceAccount": flow.account_id},
                                         "ArnLike": {"aws:SourceArn": f"arn:aws:ec2:{self.region}:"
                                                                      f"{flow.account_id}:vpc-flow-log/*"}}}]))
        IamRolePolicy(self, "flow-logs-policy", name="deliver-flow-logs", role=role.id, policy=policy_document([{
            "Sid": "DeliverToLogGroup", "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
            "Resource": [log_group_arn, f"{log_group_arn}:log-stream:*"],
        }]))
        FlowLog(self, "flow-log", vpc_id=self.vpc_id, traffic_type=flow.traffic_type,
                log_destination_type="cloud-watch-logs", log_destination=log_group.arn,
                iam_role_arn=role.arn, max_aggregation_interval=60, tags=tags or None)


# The registries of EKS add-on images (VPC CNI, kube-proxy, CoreDNS, the Pod Identity agent, the EBS CSI
# driver, the load balancer controller): 602401143452 in every commercial region but these (AWS, "Amazon
# container image registries for Amazon EKS add-ons").
EKS_ADDON_REGISTRY_DEFAULT = "602401143452"
EKS_ADDON_REGISTRY_ACCOUNTS = {
    "af-south-1": "877085696533", "ap-east-1": "800184023465", "ap-south-2": "900889452093",
    "ap-southeast-3": "296578399912", "ap-southeast-4": "491585149902", "ap-southeast-5": "151610086707",
    "ap-southeast-7": "121268973566", "ca-west-1": "761377655185", "eu-central-2": "900612956339",
    "eu-south-1": "590381155156", "eu-south-2": "455263428931", "il-central-1": "066635153087",
    "me-central-1": "759879836304", "me-south-1": "558608220178", "mx-central-1": "730335286997",
}
INTERFACE_ENDPOINT_SERVICES = ("ecr.api", "ecr.dkr", "eks-auth", "sts")
"""The interface endpoints whose policy `endpoint_policy` knows what the VPC needs of."""
_ECR_PULL = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
# What an image push adds to a pull (the runtime image is pushed to the primary's repository).
_ECR_PUSH = ["ecr:CompleteLayerUpload", "ecr:DescribeImages", "ecr:DescribeRepositories", "ecr:InitiateLayerUpload",
             "ecr:ListImages", "ecr:PutImage", "ecr:UploadLayerPart"]
# Object reads and writes of the artifact store (training, review, the runtime: see artifact_grants) and of
# Terraform's state (its lock file is written and deleted).
_S3_OBJECTS = ["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:GetBucketLocation",
               "s3:GetObject", "s3:GetObjectTagging", "s3:GetObjectVersion", "s3:GetObjectVersionTagging",
               "s3:ListBucket", "s3:ListBucketMultipartUploads", "s3:ListMultipartUploadParts", "s3:PutObject"]


def endpoint_policy(service: str, region: str, account_id: str, buckets: tuple[str, ...] = ()) -> str:
    """The policy of the VPC endpoint for `service` (`s3`, `ecr.api`, ...): what this VPC's workloads need
    of it, no more. Statements admit principals of `account_id` only (`aws:PrincipalAccount`), so credentials
    of another account cannot carry data out through the endpoint; resources are listed where they can be,
    and where they cannot, `aws:ResourceAccount` keeps requests to this account."""
    own = {"StringEquals": {"aws:PrincipalAccount": account_id}}
    own_resources = {"StringEquals": {"aws:ResourceAccount": account_id}}

    def allow(sid: str, actions: list[str] | str, resources: list[str] | str, condition: dict | None = own) -> dict:
        statement = {"Sid": sid, "Effect": "Allow", "Principal": "*", "Action": actions, "Resource": resources}
        return {**statement, "Condition": condition} if condition else statement

    if service == "s3":
        statements = [
            # ECR serves image layers from this AWS-owned bucket, through the gateway endpoint. The node
            # fetches them with URLs ECR presigns (ECR's credentials, not this account's), so the statement
            # is held by its resource alone: reads of the region's layer bucket.
            allow("EcrImageLayers", "s3:GetObject", f"arn:aws:s3:::prod-{region}-starport-layer-bucket/*", None),
            # dnf on Amazon Linux 2023 nodes (and yum on AL2) reads the region's public package repositories,
            # unsigned: no principal to hold to, only these buckets.
            allow("AmazonLinuxRepositories", "s3:GetObject", [f"arn:aws:s3:::al2023-repos-{region}-de612dc2/*",
                                                             f"arn:aws:s3:::amazonlinux-2-repos-{region}/*",
                                                             f"arn:aws:s3:::amazonlinux.{region}.amazonaws.com/*"],
                  None)]
        if buckets:
            statements.append(allow("EnvironmentBuckets", _S3_OBJECTS, sorted(
                arn for bucket in buckets for arn in (f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"))))
    elif service in ("ecr.api", "ecr.dkr"):
        registry = EKS_ADDON_REGISTRY_ACCOUNTS.get(region, EKS_ADDON_REGISTRY_DEFAULT)
        statements = [
            # A registry login names no repository: admitted for this account's principals.
            allow("RegistryLogin", "ecr:GetAuthorizationToken", "*"),
            allow("AccountRepositories", sorted(_ECR_PULL + _ECR_PUSH),
                  f"arn:aws:ecr:{region}:{account_id}:repository/*"),
            # Nodes pull the EKS add-on images from AWS's registry of the region: pulls only.
            allow("EksAddOnImages", _ECR_PULL, f"arn:aws:ecr:{region}:{registry}:repository/*")]
    elif service == "sts":
        statements = [
            allow("CallerIdentity", "sts:GetCallerIdentity", "*"),
            # Role assumption (with session tags) by this account's principals, into this account's roles.
            allow("AccountRoles", ["sts:AssumeRole", "sts:TagSession"], f"arn:aws:iam::{account_id}:role/*",
                  {"StringEquals": {"aws:PrincipalAccount": account_id, "aws:ResourceAccount": account_id}}),
            # A web identity (IRSA) caller is no account's principal yet: it may assume this account's roles only.
            allow("WebIdentityIntoAccountRoles", "sts:AssumeRoleWithWebIdentity",
                  f"arn:aws:iam::{account_id}:role/*", own_resources)]
    elif service == "eks-auth":
        # EKS Pod Identity: the node's agent exchanges a pod's token for its role's credentials.
        statements = [allow("PodIdentity", "eks-auth:AssumeRoleForPodIdentity",
                            f"arn:aws:eks:{region}:{account_id}:cluster/*")]
    else:
        raise ValueError(f"no endpoint policy for {service!r} (one of {', '.join(INTERFACE_ENDPOINT_SERVICES)})")
    return policy_document(statements)


@dataclass(frozen=True)
class SubnetPlan:
    private: list[ipaddress.IPv4Network]
    public: list[ipaddress.IPv4Network]


def plan_subnets(cidr: str, zones: int) -> SubnetPlan:
    """The subnets of `cidr` for `zones` AZs (see module docstring). Raises ValueError when the
    range is too small."""
    network = ipaddress.IPv4Network(cidr, strict=True)
    blocks = list(network.subnets(prefixlen_diff=math.ceil(math.log2(zones + 1))))
    reserved = blocks[-1]
    public_prefix = max(_PUBLIC_PREFIX_MIN, reserved.prefixlen + math.ceil(math.log2(zones)))
    if public_prefix > _PUBLIC_PREFIX_MAX:
        raise ValueError(f"{cidr} is too small for {zones} AZs: public subnets would be smaller "
                         f"than /{_PUBLIC_PREFIX_MAX}")
    public = list(reserved.subnets(new_prefix=public_prefix))[:zones]
    return SubnetPlan(private=blocks[:zones], public=public)


def _validate_existing(scope: Construct, props: VpcNetworkProps) -> None:
    existing = props.existing
    assert existing is not None  # the constructor validates an existing network only
    others = {"cidr": props.cidr is not None, "availability_zones": bool(props.availability_zones),
              "flow_logs": props.flow_logs is not None, "account_id": props.account_id is not None,
              "s3_buckets": bool(props.s3_buckets)}
    for prop, given in others.items():
        require(not given, scope, prop, "an existing network is imported as it is: give either "
                "existing or the props of a network to create, not both")
    require(bool(VPC_ID.fullmatch(existing.vpc_id)), scope, "existing.vpc_id",
            f"{existing.vpc_id!r} is not a VPC id (vpc-…)")
    require(len(existing.private_subnet_ids) >= 2, scope, "existing.private_subnet_ids",
            "EKS needs private subnets in at least two AZs")
    for i, subnet in enumerate(existing.private_subnet_ids):
        require(bool(SUBNET_ID.fullmatch(subnet)), scope, f"existing.private_subnet_ids[{i}]",
                f"{subnet!r} is not a subnet id (subnet-…)")
    require(len(set(existing.private_subnet_ids)) == len(existing.private_subnet_ids), scope,
            "existing.private_subnet_ids", "lists a subnet twice")
    _private_cidr(scope, "existing.cidr", existing.cidr)


def _validate_created(scope: Construct, props: VpcNetworkProps) -> str:
    """Validate the props of a network to create; returns the region the AZs belong to."""
    require(props.cidr is not None, scope, "cidr", "give the CIDR of the VPC to create, or existing ids")
    assert props.cidr is not None  # for the type checker: require raised otherwise
    network = _private_cidr(scope, "cidr", props.cidr)
    # AWS caps a VPC at /16; below /20 the private subnets run out of pod addresses.
    require(16 <= network.prefixlen <= 20, scope, "cidr",
            f"{props.cidr}: use a /16 to /20, room for GPU nodes and their pods in every AZ")
    zones = props.availability_zones
    require(len(zones) >= MIN_AVAILABILITY_ZONES, scope, "availability_zones",
            f"needs at least {MIN_AVAILABILITY_ZONES} AZs so that losing one keeps a majority (got {len(zones)})")
    regions = set()
    for i, zone in enumerate(zones):
        match = AVAILABILITY_ZONE.fullmatch(zone)
        require(match is not None, scope, f"availability_zones[{i}]", f"{zone!r} is not an AZ name like us-east-1a")
        assert match is not None  # for the type checker: require raised otherwise
        regions.add(match.group(1))
    require(len(regions) == 1, scope, "availability_zones", f"AZs of one region only, got {sorted(regions)}")
    require(len(set(zones)) == len(zones), scope, "availability_zones", "lists an AZ twice")
    require(props.nat_gateways in ("per_az", "single"), scope, "nat_gateways",
            f"{props.nat_gateways!r} is not 'per_az' or 'single'")
    try:
        plan_subnets(str(network), len(zones))
    except ValueError as exc:
        raise PropsError(scope, "cidr", str(exc)) from None
    require(len(set(props.interface_endpoints)) == len(props.interface_endpoints), scope,
            "interface_endpoints", "lists a service twice")
    for i, service in enumerate(props.interface_endpoints):
        require(service in INTERFACE_ENDPOINT_SERVICES, scope, f"interface_endpoints[{i}]",
                f"{service!r} is not one of {', '.join(INTERFACE_ENDPOINT_SERVICES)} (each endpoint gets a policy "
                "of what the VPC needs of it; S3 always gets a gateway endpoint)")
    require(bool(NETWORK_NAME.fullmatch(props.name)),
            scope, "name", f"{props.name!r}: letters, digits and '-', at most 48")
    if props.account_id is not None:
        require(bool(ACCOUNT_ID.fullmatch(props.account_id)), scope, "account_id",
                f"{props.account_id!r} is not a 12-digit AWS account id")
    for i, bucket in enumerate(props.s3_buckets):
        require(bool(S3_BUCKET_NAME.fullmatch(bucket)), scope, f"s3_buckets[{i}]",
                f"{bucket!r} is not an S3 bucket name (3 to 63 lowercase letters, digits, '.', '-')")
    if props.flow_logs is not None:
        flow = props.flow_logs
        require(bool(ACCOUNT_ID.fullmatch(flow.account_id)), scope, "flow_logs.account_id",
                f"{flow.account_id!r} is not a 12-digit AWS account id")
        require(bool(NETWORK_NAME.fullmatch(flow.name_prefix)), scope, "flow_logs.name_prefix",
                f"{flow.name_prefix!r}: letters, digits and '-', at most 48 (it names an IAM role)")
        require(flow.retention_days in CLOUDWATCH_LOG_RETENTION_DAYS, scope, "flow_logs.retention_days",
                f"{flow.retention_days} is not a CloudWatch Logs retention "
                f"({', '.join(map(str, CLOUDWATCH_LOG_RETENTION_DAYS))})")
        require(flow.traffic_type in ("ACCEPT", "REJECT", "ALL"), scope, "flow_logs.traffic_type",
                f"{flow.traffic_type!r} is not ACCEPT, REJECT or ALL")
    return regions.pop()


def _private_cidr(scope: Construct, prop: str, value: str) -> ipaddress.IPv4Network:
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise PropsError(scope, prop, f"{value!r} is not a network CIDR ({exc})") from None
    require(isinstance(network, ipaddress.IPv4Network) and network.is_private, scope, prop,
            f"{value} is not a private IPv4 range")
    assert isinstance(network, ipaddress.IPv4Network)  # for the type checker: require raised otherwise
    return network
