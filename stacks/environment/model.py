"""The environment model: one YAML file per environment, validated once, read by everything.

Stacks, runbooks, the runtime's deployment and the review all take an `Environment`. Invalid
input stops here, before anything is synthesized, with the field's path and the reason: field
by field in these classes, across fields in `checks`.
"""
from __future__ import annotations

import operator
import re
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema, field_validator, model_validator

from mlfleet.constructs.validation import (
    ACCOUNT_ID,
    EMAIL,
    GKE_SECURITY_GROUP,
    GOOGLE_NOTIFICATION_CHANNEL,
    GOOGLE_PROJECT_ID,
    GOOGLE_PROJECT_NUMBER,
    GOOGLE_RESOURCE_NAME,
    GOOGLE_SUBJECT_ID,
    HOSTED_ZONE_ID,
    IMAGE_DIGEST,
    KUBERNETES_LABEL_KEY,
    KUBERNETES_LABEL_VALUE,
    KUBERNETES_NAME,
    KUBERNETES_QUANTITY,
    OBJECT_PREFIX,
    POSTGRES_NAME,
    RDS_INSTANCE_CLASS,
    SECRET_MANAGER_SECRET_ID,
)
from mlfleet.stacks.environment import checks, naming, placement
from mlfleet.stacks.environment.fields import NAME_PATTERN, Model, PrivateCidr, Seconds, ServicesAccessCidr
from mlfleet.stacks.environment.pools import GpuPool
from mlfleet.stacks.environment.regions import GcpRegion, Region


class ObjectLock(Model):
    mode: Literal["GOVERNANCE", "COMPLIANCE"] = "GOVERNANCE"
    days: int = Field(ge=1, le=36500)


class ArtifactStore(Model):
    models_prefix: str = Field(default="models/", pattern=OBJECT_PREFIX.pattern)
    replication_time_control: bool = True
    noncurrent_version_days: int = Field(default=90, ge=1)
    object_lock: ObjectLock | None = None


class RegistryDatabase(Model):
    engine_version: str = Field(default="16.6", pattern=r"^\d+\.\d+$")
    instance_class: str = Field(default="db.r7g.large", pattern=RDS_INSTANCE_CLASS.pattern)
    instances_primary: int = Field(default=2, ge=1, le=15)
    instances_standby: int = Field(default=1, ge=1, le=15)
    backup_retention_days: int = Field(default=14, ge=7, le=35)


class ServingImage(Model):
    """The runtime image, pinned by digest. It is pushed to the primary's ECR repository
    `mlfleet-<env>/<name>` (replicated to every AWS standby) and to each Google Cloud region's Artifact
    Registry repository `mlfleet-<env>`; each region pulls from its own."""
    name: str = Field(default="runtime", pattern=r"^[a-z0-9]+([._-][a-z0-9]+)*$",
                      description="The image's name in the environment's repositories; default runtime")
    digest: str = Field(description="sha256:<64 hex> of the image (a tag can be moved; a digest cannot)")
    manage_registry_replication: bool = Field(
        default=True, description="Write the primary registry's ECR replication configuration (one per account "
                                  "and region); false when the team keeps its own and adds mlfleet's rule to it")

    @field_validator("name", mode="before")
    @classmethod
    def _no_tag(cls, name: object) -> object:
        if isinstance(name, str) and (":" in name or "@" in name):
            raise ValueError(f"{name!r} carries a tag or digest: give the name alone and the digest in digest "
                             "(tags are mutable, so mlfleet pins images by digest)")
        return name

    @field_validator("digest", mode="before")
    @classmethod
    def _digest(cls, digest: object) -> object:
        if isinstance(digest, str) and not IMAGE_DIGEST.fullmatch(digest):
            hint = " (that is a tag: tags are mutable, pin the image by its digest)" \
                if not digest.startswith("sha256:") else ""
            raise ValueError(f"{digest!r} is not sha256: followed by 64 lowercase hex digits{hint}")
        return digest


class ServingReplicas(Model):
    """Runtime pods per serving pool in each region."""
    primary: int = Field(default=2, ge=1, le=1000, description="In the primary region; default 2")
    standby: int = Field(default=1, ge=1, le=1000,
                         description="Warm in each standby, models loaded, ready to take traffic (Route 53 fails "
                                     "over only to a region whose runtime passes failover health); default 1")
    failover: int | None = Field(default=None, ge=1, le=1000,
                                 description="A standby scales to this on failover; default primary")

    @property
    def on_failover(self) -> int:
        return self.failover if self.failover is not None else self.primary

    def deployed(self, role: str) -> int:
        """What the serving stack deploys in a region of `role`: the primary's pods, or a standby's
        warm ones (a failover scales those to `on_failover`)."""
        return self.primary if role == "primary" else self.standby


class ServingResources(Model):
    """What each runtime pod asks for."""
    gpus: int = Field(default=1, ge=1, le=16, description="Whole GPUs (nvidia.com/gpu) per pod; default 1")
    cpu: str = Field(default="2", pattern=KUBERNETES_QUANTITY.pattern, description="CPU request; default 2")
    memory: str = Field(default="8Gi", pattern=KUBERNETES_QUANTITY.pattern, description="Memory request; default 8Gi")
    memory_limit: str = Field(default="16Gi", pattern=KUBERNETES_QUANTITY.pattern,
                              description="Memory limit; default 16Gi")


class ServingMetrics(Model):
    """Who scrapes the runtime's /metrics: its own port (8003), admitted only from one namespace."""
    namespace: str = Field(default="monitoring", pattern=KUBERNETES_NAME.pattern,
                           description="Namespace of the Prometheus that scrapes the runtime, the only source the "
                                       "NetworkPolicy admits to the metrics port; default monitoring")
    pod_monitor: bool = Field(default=False, description="Make a PodMonitor for the Prometheus Operator (its CRD "
                                                         "must be in the cluster before the plan); default false")
    pod_monitor_labels: dict[Annotated[str, Field(pattern=KUBERNETES_LABEL_KEY.pattern)],
                             Annotated[str, Field(pattern=KUBERNETES_LABEL_VALUE.pattern)]] = Field(
        default_factory=dict, description="Labels the operator selects PodMonitors by, e.g. "
                                          "{release: kube-prometheus-stack}; only with pod_monitor")

    @model_validator(mode="after")
    def _labels_need_the_monitor(self) -> "ServingMetrics":
        if self.pod_monitor_labels and not self.pod_monitor:
            raise ValueError("pod_monitor_labels label a PodMonitor: set pod_monitor: true, or drop them")
        return self


class Serving(Model):
    dns_name: str = Field(pattern=r"^([a-z0-9-]+\.)+[a-z]{2,}$")
    hosted_zone_id: str = Field(pattern=HOSTED_ZONE_ID.pattern)
    failover_health_path: str = Field(default="/v2/health/failover", pattern=r"^/\S*$")
    routing: Literal["failover", "weighted"] = "failover"
    record_ttl: int = Field(default=60, ge=5, le=3600)
    health_check_interval: Literal[10, 30] = 10
    health_check_failure_threshold: int = Field(default=3, ge=1, le=10)
    routing_control: bool = Field(
        default=True, description="With two or more regions (failover or weighted): move traffic with Route 53 ARC "
                                  "routing controls (data plane, billed per cluster-hour); false flips the records "
                                  "instead, which needs Route 53's control plane in us-east-1; default true")
    image: ServingImage = Field(description="The runtime image every region deploys, by digest")
    pools: list[Annotated[str, Field(pattern=NAME_PATTERN)]] | None = Field(
        default=None, min_length=1,
        description="The GPU pools the runtime runs on, one Deployment each; default every pool with min_size >= 1")
    replicas: ServingReplicas = ServingReplicas()
    resources: ServingResources = ServingResources()
    metrics: ServingMetrics = ServingMetrics()
    certificate_domain: str | None = Field(
        default=None, pattern=r"^([a-z0-9-]+\.)+[a-z]{2,}$",
        description="The name clients connect to (TLS server name), on every region's certificate beside the "
                    "region's endpoint; default dns_name. Validated by DNS in hosted_zone_id")

    @property
    def tls_name(self) -> str:
        return self.certificate_domain or self.dns_name


_METRIC = r"[A-Za-z0-9_.\-/]+"
_NUMBER = r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?"
THRESHOLD = re.compile(rf"^\s*({_METRIC})\s*(>=|<=|==|>|<)\s*({_NUMBER})\s*$")
_COMPARE = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq}


class Threshold(Model):
    """`<metric> <op> <number>` on a candidate's evaluation, e.g. `accuracy >= 0.9`."""
    metric: str
    operator: Literal[">=", ">", "<=", "<", "=="]
    value: float

    def holds(self, measured: float) -> bool:
        return bool(_COMPARE[self.operator](measured, self.value))

    def __str__(self) -> str:
        return f"{self.metric} {self.operator} {self.value:g}"


def _parse_threshold(value: object) -> object:
    if isinstance(value, str):
        match = THRESHOLD.fullmatch(value)
        if not match:
            raise ValueError(f"{value!r} is not '<metric> <op> <number>' with op one of >=, >, <=, <, == "
                             "(e.g. 'accuracy >= 0.9')")
        return {"metric": match.group(1), "operator": match.group(2), "value": float(match.group(3))}
    return value


# The files say `"accuracy >= 0.9"`; editors check that form.
ThresholdText = Annotated[Threshold, BeforeValidator(_parse_threshold),
                          WithJsonSchema({"type": "string", "pattern": THRESHOLD.pattern})]


class Promotion(Model):
    """The gates `mlfleet promote` holds a candidate version to before it becomes the champion."""
    thresholds: list[ThresholdText] = Field(
        default_factory=list,
        description="'<metric> <op> <number>' (op: >=, >, <=, <, ==) that must hold on the version's evaluation "
                    "metrics; a missing metric fails its gate")
    require_lineage: bool = Field(
        default=True, description="Refuse a version without a source run, dataset inputs with digests and a "
                                  "code version; default true")

    @field_validator("thresholds")
    @classmethod
    def _distinct(cls, thresholds: list[Threshold]) -> list[Threshold]:
        seen = set()
        for threshold in thresholds:
            key = (threshold.metric, threshold.operator)
            if key in seen:
                raise ValueError(f"'{threshold.metric} {threshold.operator}' is given twice: keep one bound")
            seen.add(key)
        return thresholds


class ModelRegistry(Model):
    """The MLflow tracking server of each region, on that region's registry database."""
    tracking_uri: str | None = Field(
        default=None, pattern=r"^https?://[^\s{}]*(\{region\}[^\s{}]*)*$",
        description="The tracking URI of a region's MLflow, with {region} for the region's name, e.g. "
                    "https://mlflow.{region}.example.internal; needed to promote in the deployed environment")

    def tracking_uri_of(self, region: str) -> str | None:
        return self.tracking_uri.replace("{region}", region) if self.tracking_uri else None


class Targets(Model):
    rto: Seconds = Field(description="Recovery time objective, e.g. '15m'")
    rpo: Seconds = Field(description="Recovery point objective, e.g. '15m'")


RunbookMode = Literal["planned-failover", "unplanned-failover", "failback"]


class DisasterRecovery(Model):
    """How the DR runbooks run in this environment."""
    drain_timeout: Seconds = Field(
        default=300, description="How long a planned failover waits for artifact and registry replication to "
                                 "drain before it gives up, e.g. '5m'; default 5 minutes")
    lag_max_age: Seconds = Field(
        default=180, description="A replica-lag datapoint older than this reads as unknown (no bound on data loss), "
                                 "e.g. '3m'; default 3 minutes")
    approvals: list[RunbookMode] = Field(
        default_factory=list,
        description="Runbook modes that wait for `mlfleet approve RUN` by an identity other than the one that "
                    "started the run (planned-failover, unplanned-failover, failback); drills run without")

    @field_validator("approvals")
    @classmethod
    def _distinct_modes(cls, modes: list[str]) -> list[str]:
        if len(set(modes)) != len(modes):
            raise ValueError("a runbook mode is listed twice")
        return modes


class Acknowledgement(Model):
    rule: str = Field(pattern=r"^MLF\d{3}$")
    reason: str = Field(min_length=10)
    resource: str = Field(default="*", description="Construct path glob the exception covers")


class Aws(Model):
    account_id: str = Field(pattern=ACCOUNT_ID.pattern)


_AWS_PRINCIPAL = r"arn:aws:iam::\d{12}:(role|user)/[\w+=,.@/-]+"
_GOOGLE_PRINCIPAL = r"(user|group|serviceAccount):[^\s@]+@[^\s@]+\.[a-z]{2,}"
_PRINCIPAL = Annotated[str, Field(pattern=rf"^({_AWS_PRINCIPAL}|{_GOOGLE_PRINCIPAL})$")]
_AWS_ROLE = Annotated[str, Field(pattern=r"^arn:aws:iam::\d{12}:role/[\w+=,.@/-]+$")]


def is_aws_principal(principal: str) -> bool:
    return principal.startswith("arn:aws:")


class Identities(Model):
    """Who may assume the training (writes candidate models) and review (approves champions)
    identities: IAM role or user ARNs for AWS regions, `user:`, `group:` or `serviceAccount:`
    members for Google Cloud regions (each cloud takes the principals of its own kind). Serving
    pods get their own identity (EKS Pod Identity, GKE Workload Identity)."""
    training_principals: list[_PRINCIPAL] = Field(min_length=1)
    review_principals: list[_PRINCIPAL] = Field(min_length=1)
    deployer_principals: list[_AWS_ROLE] = Field(
        default_factory=list,
        description="IAM roles that apply the stacks: cluster admins of every EKS cluster (through EKS access "
                    "entries; a cluster's creator gets no access implicitly), needed to apply the serving stacks")
    operator_principals: list[_AWS_ROLE] = Field(
        default_factory=list,
        description="IAM roles of the on-call and the DR runbooks: edit access to the runtime's namespace, to scale "
                    "its Deployments and reach its management port through port-forward; those of the "
                    "environment's account also get the DR runbooks' IAM policy")

    def of_cloud(self, kind: str, cloud: str) -> list[str]:
        principals = self.training_principals if kind == "training" else self.review_principals
        return [p for p in principals if is_aws_principal(p) == (cloud == "aws")]


class CloudSqlRegistry(Model):
    """The registry database in Google Cloud regions: Cloud SQL for PostgreSQL, Enterprise Plus."""
    database_version: Literal["POSTGRES_15", "POSTGRES_16", "POSTGRES_17"] = "POSTGRES_16"
    tier: str = Field(default="db-perf-optimized-N-2", pattern=r"^db-perf-optimized-N-\d+$")
    disk_size_gb: int = Field(default=100, ge=10, le=65536)


class RegistrySource(Model):
    """Where a Google Cloud standby replicates the registry from when the primary is on AWS:
    the Aurora cluster endpoint, reachable from the Google Cloud VPC (VPN or Interconnect)."""
    host: str = Field(pattern=r"^([a-z0-9-]+\.)+[a-z]{2,}$",
                      description="The Aurora cluster (writer) endpoint, known once the primary is deployed")
    port: int = Field(default=5432, ge=1, le=65535)
    replication_user: str = Field(default="mlfleet_replication", pattern=POSTGRES_NAME.pattern)
    password_secret: str | None = Field(
        default=None, pattern=SECRET_MANAGER_SECRET_ID.pattern,
        description="Secret Manager secret with the replication user's password; "
                    "default mlfleet-<env>-registry-replication")
    ca_certificate: str | None = Field(default=None, description="PEM of the Aurora CA bundle, to verify the source")


_EMAIL = Annotated[str, Field(pattern=EMAIL.pattern)]
_NOTIFICATION_CHANNEL = Annotated[str, Field(pattern=GOOGLE_NOTIFICATION_CHANNEL.pattern)]


class Gcp(Model):
    """The Google Cloud project of the environment's Google Cloud regions."""
    project_id: str = Field(pattern=GOOGLE_PROJECT_ID.pattern)
    project_number: str = Field(pattern=GOOGLE_PROJECT_NUMBER.pattern,
                                description="Names the Google service agents that use the project's keys")
    artifact_regions: list[str] | None = Field(
        default=None, min_length=2, max_length=2,
        description="The dual-region pair of the artifact bucket; default the two Google Cloud regions")
    existing_vpc: str | None = Field(
        default=None, pattern=GOOGLE_RESOURCE_NAME.pattern,
        description="Use this VPC (with private services access set up) instead of creating mlfleet-<env>")
    release_channel: Literal["RAPID", "REGULAR", "STABLE", "EXTENDED"] = "REGULAR"
    soft_delete_days: int = Field(
        default=30, ge=7, le=90, description="Days a deleted or overwritten artifact stays restorable in Cloud Storage")
    control_plane_networks: dict[str, PrivateCidr] = Field(
        default_factory=dict, description="Name → private CIDR allowed to reach the GKE control planes "
                                          "(the VPC's own subnets need no entry)")
    registry: CloudSqlRegistry = CloudSqlRegistry()
    registry_source: RegistrySource | None = Field(
        default=None, description="AWS primary only: replicate its Aurora registry into each Google Cloud standby")
    private_services_cidr: ServicesAccessCidr = Field(
        default="10.250.0.0/16", description="The VPC range Cloud SQL private IPs (and DMS) come from")
    alert_emails: list[_EMAIL] = Field(default_factory=list)
    notification_channels: list[_NOTIFICATION_CHANNEL] = Field(default_factory=list)
    rbac_security_group: str | None = Field(
        default=None, pattern=GKE_SECURITY_GROUP.pattern,
        description="Google Groups for RBAC: the Workspace group gke-security-groups@<domain> whose member groups "
                    "the GKE clusters' RBAC bindings may name; default none")
    manage_binary_authorization_policy: bool = Field(
        default=True, description="Write the project's Binary Authorization policy (one per project: only the "
                                  "runtime image by digest, and GKE's system images); false when the project keeps "
                                  "its own and adds mlfleet's image patterns to it")
    storage_transfer_subject_id: str | None = Field(
        default=None, pattern=GOOGLE_SUBJECT_ID.pattern,
        description="subjectId of the project's Storage Transfer service agent (googleServiceAccounts.get): "
                    "the identity that copies an AWS primary's artifacts into Google Cloud")

    @model_validator(mode="after")
    def _alerts_go_somewhere(self) -> Gcp:
        if not self.alert_emails and not self.notification_channels:
            raise ValueError("give alert_emails or notification_channels: an alert nobody receives protects nothing")
        return self


class Environment(Model):
    name: str = Field(pattern=NAME_PATTERN)
    aws: Aws = Field(description="The AWS account: its regions, and the Route 53 zone that routes every region")
    gcp: Gcp | None = Field(default=None, description="The Google Cloud project, when a region has cloud: gcp")
    regions: list[Region] = Field(min_length=1)
    gpu_pools: list[GpuPool] = Field(min_length=1)
    artifact_store: ArtifactStore = ArtifactStore()
    registry_database: RegistryDatabase = RegistryDatabase()
    model_registry: ModelRegistry = ModelRegistry()
    promotion: Promotion = Promotion()
    identities: Identities
    serving: Serving
    targets: Targets
    dr: DisasterRecovery = DisasterRecovery()
    tags: dict[str, str] = Field(default_factory=dict)
    acknowledgements: list[Acknowledgement] = Field(default_factory=list)

    @field_validator("tags")
    @classmethod
    def _required_tags(cls, tags: dict[str, str]) -> dict[str, str]:
        missing = [t for t in ("owner", "cost-center") if not tags.get(t)]
        if missing:
            raise ValueError(f"required tags missing: {', '.join(missing)}")
        return tags

    @model_validator(mode="after")
    def _cross_field(self) -> Environment:
        checks.check_environment(self)
        return self

    # Derived views used by stacks, runbooks and the review.
    @property
    def serving_pools(self) -> list[GpuPool]:
        """The pools the runtime runs on (checked: each exists)."""
        names = self.serving.pools
        if names is None:
            return [p for p in self.gpu_pools if p.min_size >= 1]
        return [p for p in self.gpu_pools if p.name in names]

    @property
    def primary(self) -> Region:
        return next(r for r in self.regions if r.role == "primary")

    @property
    def standbys(self) -> list[Region]:
        return [r for r in self.regions if r.role == "standby"]

    def regions_on(self, cloud: str) -> list[Region]:
        return [r for r in self.regions if r.cloud == cloud]

    @property
    def clouds(self) -> list[str]:
        return sorted({r.cloud for r in self.regions})

    @property
    def cross_cloud(self) -> bool:
        return len(self.clouds) > 1

    def gke_control_plane_cidr(self, region: GcpRegion) -> str:
        """The region's GKE control plane /28: given, or the n-th /28 of 172.16.0.0/24."""
        return placement.gke_control_plane_cidr(self, region)

    @property
    def gcp_network_name(self) -> str | None:
        """The Google Cloud VPC every region's subnet joins."""
        if self.gcp is None:
            return None
        return self.gcp.existing_vpc or naming.gcp_network(self.name)

    @property
    def gcp_artifact_regions(self) -> tuple[str, ...] | None:
        """The dual-region pair of the Google Cloud artifact bucket, when there are GCP regions (a
        validated environment has two; the checks see one where only one region is on Google Cloud)."""
        if not self.regions_on("gcp"):
            return None
        if self.gcp is not None and self.gcp.artifact_regions:
            return tuple(self.gcp.artifact_regions)
        return tuple(r.name for r in self.regions_on("gcp"))[:2]

    def region(self, name: str) -> Region:
        for region in self.regions:
            if region.name == name:
                return region
        raise KeyError(f"environment {self.name} has no region {name}")

    def endpoint(self, region: Region) -> str:
        return region.endpoint or f"{region.name}.{self.serving.dns_name}"

    def acknowledged(self, rule: str) -> Acknowledgement | None:
        return next((a for a in self.acknowledgements if a.rule == rule), None)

