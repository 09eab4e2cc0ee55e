"""Validation of construct props: every name shape mlfleet checks, and one error type that names the
construct, the prop and the reason.

Pure Python on purpose: the environment core checks names against the same shapes, and importing
this module must not load the CDK (jsii); `Construct` is only a type here.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from constructs import Construct

# --- Shapes both clouds share --------------------------------------------------------------------
DNS_NAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
"""A fully qualified DNS name (no trailing dot)."""
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
HTTPS_URL = re.compile(r"^https://\S+$")
HTTP_PATH = re.compile(r"^/[A-Za-z0-9/_.-]*$")
OBJECT_PREFIX = re.compile(r"^[a-z0-9][a-z0-9/_-]*/$")
"""A relative object key prefix ending in '/', e.g. `models/` (S3 and Cloud Storage alike)."""
POSTGRES_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
"""A PostgreSQL database or user name."""

# Kubernetes.
KUBERNETES_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
"""An RFC 1123 DNS label: namespaces, service accounts, deployments."""
_KUBERNETES_LABEL_NAME = r"[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?"
KUBERNETES_LABEL_KEY = re.compile(rf"^([a-z0-9]([a-z0-9.-]{{0,251}}[a-z0-9])?/)?{_KUBERNETES_LABEL_NAME}$")
KUBERNETES_LABEL_VALUE = re.compile(rf"^({_KUBERNETES_LABEL_NAME})?$")
"""A label (or taint) value: empty, or 63 characters of letters, digits, '-', '_', '.'."""

# Container images and charts.
_IMAGE_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_REFERENCE = re.compile(
    rf"^(?P<repository>{_IMAGE_COMPONENT}(?::\d+(?:/{_IMAGE_COMPONENT})+|(?:/{_IMAGE_COMPONENT})*))"
    r"@(?P<digest>sha256:[0-9a-f]{64})$")
"""An image pinned by digest alone, `<repository>@sha256:<64 hex>` (a registry port is allowed, a tag is not)."""
HELM_CHART_VERSION = re.compile(r"^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$")
"""One exact chart version (semver, no range, no leading `v`)."""
KUBERNETES_QUANTITY = re.compile(r"^\d+(\.\d+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")
"""A resource quantity: `2`, `500m`, `16Gi`."""
IMAGE_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
"""A container image's content digest: what an image is pinned by (a tag can be moved)."""

SEMANTIC_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
"""An exact release version, e.g. a Helm chart's `3.5.0` (no range, no pre-release)."""

# --- AWS -----------------------------------------------------------------------------------------
ACCOUNT_ID = re.compile(r"^\d{12}$")
REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
AVAILABILITY_ZONE = re.compile(r"^([a-z]{2}(?:-gov)?-[a-z]+-\d)([a-z])$")
"""An AZ name; group 1 is its region."""
S3_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
S3_REPLICATION_RULE_ID = re.compile(r"^[\w.-]{1,255}$")
CLOUDTRAIL_TRAIL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{2,127}$")
IAM_ROLE_NAME = re.compile(r"^[\w+=,.@-]{1,64}$")
IAM_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
IAM_ROLE_OR_USER_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:(role|user)/[\w+=,.@/-]+$")
IAM_TRUSTED_PRINCIPAL_ARN = re.compile(r"^arn:aws(-[a-z]+)*:iam::\d{12}:(root|(role|user)/[\w+=,.@/-]+)$")
"""A principal a trust policy may name: an account root, a role or a user (never a wildcard)."""
KMS_ALIAS_NAME = re.compile(r"^[a-zA-Z0-9/_-]{1,250}$")
"""An alias without its `alias/` prefix."""
KMS_KEY_OR_ALIAS_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)/\S+$")
VPC_ID = re.compile(r"^vpc-[0-9a-f]{8,17}$")
SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{8,17}$")
NETWORK_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9-]{0,47}$")
"""The name mlfleet gives a VPC and prefixes its subnets, gateways and flow logs with."""
EC2_INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
CAPACITY_RESERVATION_ID = re.compile(r"^cr-[0-9a-f]{8,17}$")
RESOURCE_GROUP_ARN = re.compile(r"^arn:aws[a-z-]*:resource-groups:[a-z0-9-]+:\d{12}:group/[A-Za-z0-9_.-]+$")
EKS_CLUSTER_NAME = re.compile(r"^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$")
EKS_NODE_GROUP_NAME = re.compile(r"^[0-9A-Za-z][A-Za-z0-9_-]{0,62}$")
EKS_ACCESS_POLICY_ARN = re.compile(r"^arn:aws[a-z-]*:eks::aws:cluster-access-policy/[A-Za-z0-9]+$")
RDS_IDENTIFIER = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
"""An RDS cluster or global cluster identifier (63 characters at most, checked by length)."""
RDS_INSTANCE_CLASS = re.compile(r"^db\.[a-z0-9]+\.[a-z0-9]+$")
AURORA_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
"""An Aurora PostgreSQL database or master user name (starts with a letter)."""
DYNAMODB_TABLE_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
DYNAMODB_ATTRIBUTE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,255}$")
CLOUDWATCH_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,99}$")
"""What mlfleet puts in alarm and topic names: a prefix, a pool's name."""
SQS_QUEUE_ARN = re.compile(r"^arn:aws[a-z-]*:sqs:[a-z0-9-]+:\d{12}:\S+$")
LAMBDA_FUNCTION_ARN = re.compile(r"^arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:\S+$")
HOSTED_ZONE_ID = re.compile(r"^Z[A-Z0-9]{4,32}$")
ACM_CERTIFICATE_ARN = re.compile(r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]+$")
ECR_REPOSITORY_NAME = re.compile(r"^(?=.{2,256}$)([a-z0-9]+([._-][a-z0-9]+)*/)*[a-z0-9]+([._-][a-z0-9]+)*$")
"""An ECR repository name: lowercase path components separated by '/', e.g. `mlfleet/runtime`."""
WILDCARD_DNS_NAME = re.compile(r"^\*\.(?=.{1,251}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
"""A certificate's wildcard name, e.g. `*.serving.example.com` (one leftmost `*` label)."""

# --- Google Cloud --------------------------------------------------------------------------------
# They live here, not beside the Google constructs, so that an AWS-only synth never imports (and
# pays for) the Google provider's bindings.
GOOGLE_PROJECT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
GOOGLE_PROJECT_NUMBER = re.compile(r"^[1-9]\d{5,18}$")
GOOGLE_REGION = re.compile(r"^[a-z]+-[a-z]+\d+$")
GOOGLE_ZONE = re.compile(r"^([a-z]+-[a-z]+\d+)-[a-z]$")
GOOGLE_RESOURCE_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
"""RFC 1035 names: what Compute, GKE and Cloud SQL accept for most resources."""
GOOGLE_SERVICE_ACCOUNT_ID = re.compile(r"^[a-z]([-a-z0-9]{4,28}[a-z0-9])$")
GOOGLE_SERVICE_ACCOUNT_EMAIL = re.compile(
    r"^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z][a-z0-9-]{4,28}[a-z0-9]\.iam\.gserviceaccount\.com$")
GOOGLE_IAM_MEMBER = re.compile(r"^(user|group|serviceAccount):[^\s@]+@[^\s@]+\.[a-z]{2,}$")
"""A principal of an IAM binding, e.g. `group:ml-review@example.com` (never allUsers)."""
GOOGLE_API_SERVICE = re.compile(r"^[a-z0-9-]+\.googleapis\.com$")
"""A Google API's service name, e.g. `storage.googleapis.com`."""
GKE_SECURITY_GROUP = re.compile(r"^gke-security-groups@([a-z0-9-]+\.)+[a-z]{2,}$")
"""The Workspace group of Google Groups for RBAC: GKE requires the name `gke-security-groups@<domain>`."""
GOOGLE_SUBJECT_ID = re.compile(r"^\d{10,30}$")
"""The numeric subject id of a Google identity, as a web identity federation names it."""
GOOGLE_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
GOOGLE_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
GCS_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{1,61}[a-z0-9]$")
GOOGLE_KMS_LOCATION = re.compile(r"^[a-z][a-z0-9-]*[a-z0-9]$")
"""A Cloud KMS location: a region, a multi-region (`us`) or a dual-region (`nam4`)."""
GOOGLE_KMS_NAME = re.compile(r"^[A-Za-z0-9_-]{1,63}$")
"""A Cloud KMS key ring or key name."""
GOOGLE_CRYPTO_KEY_ID = re.compile(
    r"^projects/(?P<project>[^/]+)/locations/(?P<location>[a-z0-9-]+)/keyRings/(?P<ring>[A-Za-z0-9_-]{1,63})"
    r"/cryptoKeys/(?P<key>[A-Za-z0-9_-]{1,63})$")
GOOGLE_MACHINE_TYPE = re.compile(r"^[a-z][a-z0-9]*-[a-z0-9-]+$")
GOOGLE_ACCELERATOR_TYPE = re.compile(r"^nvidia-[a-z0-9-]+$")
GOOGLE_RESERVATION = re.compile(
    r"^(projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/reservations/)?[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
"""A Compute Engine reservation: its name, or `projects/<project>/reservations/<name>` (shared)."""
GOOGLE_NOTIFICATION_CHANNEL = re.compile(r"^projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/notificationChannels/\d+$")
SECRET_MANAGER_SECRET_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
DMS_CONNECTION_PROFILE_ID = re.compile(r"^[a-z][a-z0-9-]{0,58}[a-z0-9]$")


class PropsError(ValueError):
    """Invalid props given to an mlfleet construct. Raised in the constructor, before synth."""

    def __init__(self, scope: Construct | str, prop: str, reason: str):
        path = scope if isinstance(scope, str) else (scope.node.path or scope.node.id)
        self.construct_path = path
        self.prop = prop
        self.reason = reason
        super().__init__(f"{path}: {prop}: {reason}")


def require(condition: bool, scope: Construct | str, prop: str, reason: str) -> None:
    """Raise PropsError(scope, prop, reason) unless condition holds."""
    if not condition:
        raise PropsError(scope, prop, reason)


def require_kubernetes_labels(scope: Construct | str, prop: str, labels: dict[str, str]) -> None:
    """Every key and value of `labels` (a selector, a label set) is a Kubernetes label."""
    for key, value in labels.items():
        require(bool(KUBERNETES_LABEL_KEY.fullmatch(key)) and bool(KUBERNETES_LABEL_VALUE.fullmatch(value)),
                scope, f"{prop}[{key!r}]", f"{key}={value} is not a Kubernetes label")


def require_google_labels(scope: Construct | str, labels: dict[str, str]) -> None:
    """Every key and value of `labels` is a Google Cloud label."""
    for key, value in labels.items():
        require(bool(GOOGLE_LABEL_KEY.fullmatch(key)) and bool(GOOGLE_LABEL_VALUE.fullmatch(value)),
                scope, f"labels[{key!r}]",
                "is not a Google Cloud label (lowercase letters, digits, '-', '_'; keys start with a letter)")
