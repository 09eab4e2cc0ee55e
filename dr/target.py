"""Where a runbook acts: the sandbox (the default: endpoints from its state file) or a deployed
AWS environment (the default credential chain; regional serving endpoints over HTTPS; pinning
through the Kubernetes API's port-forward).

Clients are cached per service and region and never retry on their own: the engine decides
what is worth retrying (see retry.py)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mlfleet.dr.errors import DrUsageError
from mlfleet.dr.locks import DynamoDbLock, FileLock, RunLock
from mlfleet.dr.retry import RetryPolicy
from mlfleet.stacks.environment import Environment, naming

if TYPE_CHECKING:
    from mlfleet.dr.sandbox.control import ControlClient

SANDBOX, AWS = "sandbox", "aws"
REGISTRY_DR_USER = "mlfleet_dr"
"""The registry database role the runbooks log in as on AWS, with an IAM authentication token."""


@dataclass
class Target:
    env: Environment
    kind: str
    state_dir: Path
    hosted_zone_id: str
    serving_urls: dict[str, str]
    admin_token: str | None
    aws_endpoint: str | None = None
    control: ControlClient | None = None
    """The sandbox's ControlClient (fault injection for drills); None against a cloud."""
    gcp_endpoint: str | None = None
    gcp_monitoring: str | None = None
    """The sandbox's Cloud Monitoring API (host:port, gRPC in plaintext); Google's against a project."""
    gcp_storage: dict[str, str] = field(default_factory=dict)
    """Google Cloud region -> the sandbox's Cloud Storage endpoint for that region's copy of the bucket."""
    kube_hosts: dict[str, str] = field(default_factory=dict)
    """Region -> the sandbox's Kubernetes API (`Configuration.host`); against AWS, each region's
    EKS cluster is found by name (see kube.py)."""
    kube_token: str | None = None
    registry_dsns: dict[str, str] = field(default_factory=dict)
    """Region -> the sandbox's registry database URL (its login and password); against AWS the
    runbooks log in with an IAM token instead (`registry_credentials`)."""
    mlflow_urls: dict[str, str] = field(default_factory=dict)
    """Region -> the sandbox's MLflow tracking server; against AWS the environment's
    `model_registry.tracking_uri` names them."""
    pin_through_port_forward: bool = False
    """Pin (and read pins) on every runtime pod through the Kubernetes API's port-forward to the
    management port (kube_portforward.py) instead of the serving URL. Against AWS always: a real pod
    serves management only on its loopback. The sandbox serves it on the HTTP port; tests turn this
    on to run the cluster path against the fake API server."""
    poll_interval_s: float = 5.0
    retry: RetryPolicy = RetryPolicy()
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    _clients: dict = field(default_factory=dict, repr=False)

    @classmethod
    def sandbox(cls, env: Environment, state_dir: Path, *, port_forward: bool = False) -> "Target":
        """`port_forward`: pin as against a cluster (see `pin_through_port_forward`), the admin
        token from MLFLEET_ADMIN_TOKEN or else the sandbox's `mlfleet-runtime-admin` Secret."""
        from mlfleet.dr.sandbox import SandboxState
        from mlfleet.dr.sandbox.control import ControlClient

        state = SandboxState.load(state_dir, env.name)
        token = os.environ.get("MLFLEET_ADMIN_TOKEN") if port_forward else state.admin_token
        return cls(env=env, kind=SANDBOX, state_dir=Path(state_dir), hosted_zone_id=state.hosted_zone_id,
                   serving_urls=dict(state.serving), admin_token=token, aws_endpoint=state.aws_endpoint,
                   control=ControlClient(state.control_url, state.control_token), gcp_endpoint=state.gcp_endpoint,
                   gcp_monitoring=state.gcp_monitoring or None, gcp_storage=dict(state.gcp_storage),
                   kube_hosts=dict(state.kubernetes), kube_token=state.kubernetes_token,
                   registry_dsns=dict(state.registry), mlflow_urls=dict(state.mlflow),
                   pin_through_port_forward=port_forward,
                   poll_interval_s=0.05, retry=RetryPolicy(attempts=4, base_s=0.05, cap_s=0.5),
                   connect_timeout_s=1.0, read_timeout_s=2.0)

    @classmethod
    def aws(cls, env: Environment, state_dir: Path) -> "Target":
        return cls(env=env, kind=AWS, state_dir=Path(state_dir), hosted_zone_id=env.serving.hosted_zone_id,
                   serving_urls={r.name: f"https://{env.endpoint(r)}" for r in env.regions},
                   admin_token=os.environ.get("MLFLEET_ADMIN_TOKEN"), pin_through_port_forward=True)

    def region(self, name: str):
        try:
            return self.env.region(name)
        except KeyError:
            raise DrUsageError(f"{name} is not a region of environment {self.env.name} "
                               f"(regions: {', '.join(r.name for r in self.env.regions)})") from None

    def client(self, service: str, region: str):
        key = (service, region)
        if key not in self._clients:
            import boto3
            from botocore.config import Config

            config = Config(retries={"total_max_attempts": 1}, connect_timeout=self.connect_timeout_s,
                            read_timeout=self.read_timeout_s)
            if self.kind == SANDBOX:
                from mlfleet.dr.sandbox import SANDBOX_CREDENTIALS

                self._clients[key] = boto3.client(
                    service, region_name=region, endpoint_url=self.aws_endpoint, config=config,
                    aws_access_key_id=SANDBOX_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                    aws_secret_access_key=SANDBOX_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
            else:
                self._clients[key] = boto3.client(service, region_name=region, config=config)
        return self._clients[key]

    def registry_credentials(self, region: str, host: str, port: int) -> dict[str, str]:
        """libpq parameters (beside host and port) to log in to the region's registry database:
        the sandbox's login from its state file, or on AWS `mlfleet_dr` with an IAM token over TLS
        that verifies the server's name (libpq reads the RDS CA bundle from PGSSLROOTCERT)."""
        if self.kind == SANDBOX:
            from psycopg.conninfo import conninfo_to_dict

            dsn = self.registry_dsns.get(region)
            if not dsn:
                raise DrUsageError(f"the sandbox's state file names no registry database for {region}; "
                                   f"start the sandbox again with `mlfleet sandbox up --env {self.env.name}`")
            params = conninfo_to_dict(dsn)
            return {key: str(params[key]) for key in ("user", "password", "dbname") if key in params}
        token = self.client("rds", region).generate_db_auth_token(
            DBHostname=host, Port=port, DBUsername=REGISTRY_DR_USER, Region=region)
        return {"user": REGISTRY_DR_USER, "password": token, "dbname": naming.registry_database(),
                "sslmode": "verify-full"}

    # -- Google Cloud ---------------------------------------------------------------------------
    @property
    def gcp_project(self) -> str:
        if self.env.gcp is None:
            raise DrUsageError(f"environment {self.env.name} has no gcp section")
        return self.env.gcp.project_id

    def gcp_clients(self):
        """GKE, Compute and the REST APIs (Cloud SQL Admin, Database Migration): the sandbox's fake
        endpoint with anonymous credentials, or Google's with the application default credentials."""
        from mlfleet.stacks.clients.google_cloud import GcpClients

        return self.cached(("gcp",), lambda: GcpClients(endpoint=self.gcp_endpoint if self.kind == SANDBOX else None))

    def gcs(self, region: str):
        """A google-cloud-storage client that reads and writes `region`'s copy of the artifact bucket
        (in the sandbox, its location's endpoint; against Google, one client: the service picks)."""
        def build():
            from google.cloud import storage

            if self.kind == SANDBOX:
                from google.auth.credentials import AnonymousCredentials

                endpoint = self.gcp_storage.get(region) or f"{self.gcp_endpoint}/r/{region}"
                return storage.Client(project=self.gcp_project, credentials=AnonymousCredentials(),
                                      client_options={"api_endpoint": endpoint})
            return storage.Client(project=self.gcp_project)

        return self.cached(("gcs", region if self.kind == SANDBOX else "*"), build)

    def monitoring(self):
        """Cloud Monitoring's MetricServiceClient (gRPC: the library has no REST transport)."""
        def build():
            from google.cloud import monitoring_v3

            if self.kind == SANDBOX:
                import grpc
                from google.cloud.monitoring_v3.services.metric_service.transports import MetricServiceGrpcTransport

                if not self.gcp_monitoring:
                    raise DrUsageError("the sandbox's state file names no Cloud Monitoring endpoint; start the "
                                       f"sandbox again with `mlfleet sandbox up --env {self.env.name}`")
                channel = grpc.insecure_channel(self.gcp_monitoring)
                return monitoring_v3.MetricServiceClient(transport=MetricServiceGrpcTransport(channel=channel))
            return monitoring_v3.MetricServiceClient()

        return self.cached(("monitoring",), build)

    def gcs_bucket(self) -> str:
        return naming.gcs_artifact_bucket(self.env.name, self.gcp_project)

    def gke(self):
        """The GKE client (REST), built once."""
        return self.cached(("gke",), lambda: self.gcp_clients().container())

    def cached(self, key: tuple, build):
        """A client other than boto3's (the Kubernetes API), built once per target like them."""
        if key not in self._clients:
            self._clients[key] = build()
        return self._clients[key]

    def warm(self) -> None:
        """Build every client a failover needs now, not on the clock after a fault (and import the
        signature check the champion step runs)."""
        import mlfleet.dr.kms_signer  # noqa: F401 - cryptography's import is not recovery time

        for region in self.env.regions_on("aws"):
            for service in ("s3", "rds", "eks", "cloudwatch", "dynamodb", "ecr", "kms"):
                self.client(service, region.name)
        for region in self.env.regions_on("gcp"):
            self.gcs(region.name)
        if self.env.regions_on("gcp"):
            self.gcp_clients().sql_session()
            self.gke()
            self.monitoring()
        self.client("route53", "us-east-1")
        if self.kind == SANDBOX:  # against EKS, building one reads the cluster: left to the step
            from mlfleet.dr import kube

            for region in self.env.regions:
                kube.apps_api(self, region.name)
                kube.core_api(self, region.name)

    def lock(self, region: str) -> RunLock:
        if self.kind == SANDBOX:
            return FileLock(self.state_dir / "locks" / f"{self.env.name}.lock")
        return DynamoDbLock(self.client("dynamodb", region), naming.dr_lock_table(self.env.name), f"{self.env.name}/dr")

    def bucket(self, region: str) -> str:
        return naming.artifact_bucket(self.env.name, self.env.aws.account_id, region)

    @property
    def runs_dir(self) -> Path:
        return self.state_dir / "dr" / self.env.name

    @property
    def audit_path(self) -> Path:
        return self.state_dir / "audit" / f"{self.env.name}.jsonl"
