"""The local sandbox: a multi-region world on loopback that the real clients talk to.

`Sandbox(env).up()` starts a moto server (with mlfleet's extensions), the AWS fault proxy in
front of it, a fake GCP endpoint, a fake Kubernetes API (every region's runtime Deployments, their
pods, the admin token's Secret, port-forward to the region's runtime),
one runtime process per region behind its own serving proxy, one PostgreSQL server per region
for the registry (the writer's standbys streaming from it, registry_db.py), and the control API; creates the
environment's resources through boto3 and seeds the runtime image into every region's ECR
repository by its digest; publishes an approved champion model to the primary artifact bucket
and waits until it has replicated. Google Cloud regions (gcp_world.py) are seeded into the fake
Google endpoint: GKE pools, Cloud SQL instances on the region's PostgreSQL server, the dual-region
bucket holding the same signed champion, the replica-lag metric (fake_monitoring.py, gRPC), and
for an AWS primary the Storage Transfer job's copy from S3; their runtimes read gs://.
The endpoints are written to `<state_dir>/sandbox/<env>/state.json` (mode 0600: it holds the
tokens) so that other commands find them.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric import ec

from mlfleet.dr.errors import DrUsageError

if TYPE_CHECKING:
    from mlfleet.dr.sandbox.gcp_world import TransferJob
from mlfleet.stacks.environment import Environment, naming

SANDBOX_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "sandbox", "AWS_SECRET_ACCESS_KEY": "sandbox"}
EXAMPLE_MODEL = "mlp"


@dataclass
class SandboxState:
    env: str
    aws_endpoint: str
    control_url: str
    control_token: str
    admin_token: str
    gcp_endpoint: str
    hosted_zone_id: str
    health_checks: dict[str, str]
    serving: dict[str, str]
    """Region -> the serving proxy's URL (what clients and health checks reach)."""
    kubernetes: dict[str, str] = field(default_factory=dict)
    """Region -> the fake Kubernetes API server (`Configuration.host`)."""
    kubernetes_token: str = ""
    registry: dict[str, str] = field(default_factory=dict)
    """Region -> the libpq URL of its registry database server (with the password)."""
    mlflow: dict[str, str] = field(default_factory=dict)
    """Region -> its MLflow tracking server (read-only while its database is a standby)."""
    gcp_monitoring: str = ""
    """host:port of the fake Cloud Monitoring API (gRPC, plaintext)."""
    gcp_storage: dict[str, str] = field(default_factory=dict)
    """Google Cloud region -> the Cloud Storage endpoint that reads and writes its copy of the bucket."""
    pid: int = field(default_factory=os.getpid)

    @staticmethod
    def path(state_dir: Path, env: str) -> Path:
        return Path(state_dir) / "sandbox" / env / "state.json"

    def save(self, state_dir: Path) -> Path:
        path = self.path(state_dir, self.env)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(asdict(self), handle, indent=2)
        return path

    @classmethod
    def load(cls, state_dir: Path, env: str) -> "SandboxState":
        path = cls.path(state_dir, env)
        try:
            state = cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            raise DrUsageError(f"no sandbox is running for environment {env!r} (no {path}); "
                               f"start one with `mlfleet sandbox up --env {env}`") from None
        except (ValueError, TypeError) as exc:
            raise DrUsageError(f"{path} is not a sandbox state file ({exc}); "
                               "remove it and start the sandbox again") from None
        try:
            os.kill(state.pid, 0)
        except ProcessLookupError:
            raise DrUsageError(f"the sandbox for {env!r} is not running any more (process {state.pid} is gone); "
                               f"start it again with `mlfleet sandbox up --env {env}`") from None
        return state


class Sandbox:
    def __init__(self, env: Environment, *, state_dir: Path = Path(".mlfleet"), settings=None,
                 canary_interval_s: float = 0.5, transfer_interval_s: float = 2.0, model_registry: bool = True,
                 log=lambda line: None):
        from mlfleet.dr.sandbox.moto_extensions import Settings

        self.env = env
        self.state_dir = Path(state_dir)
        self.settings = settings or Settings()
        self._defaults = asdict(self.settings)
        self.canary_interval_s = canary_interval_s
        self.transfer_interval_s = transfer_interval_s
        self.model_registry = model_registry
        """Start the MLflow servers (most of `up`'s time); tests that never reach MLflow leave them out."""
        """The simulated Storage Transfer job's schedule (an hour or more in a deployment)."""
        self.log = log
        self._state: SandboxState | None = None
        self._stack: list = []
        self._runtimes: dict = {}
        self._workdir = Path(tempfile.mkdtemp(prefix=f"mlfleet-sandbox-{env.name}-"))
        # The signing key's material, fixed for the sandbox's life (see set_signing_key_material).
        self._signing_material = ec.generate_private_key(ec.SECP256R1())

    # -- lifecycle ---------------------------------------------------------------------------
    def up(self) -> SandboxState:
        from moto.server import ThreadedMotoServer

        from mlfleet.dr.sandbox.control import ControlServer
        from mlfleet.dr.sandbox.fake_gcp import FakeGcp
        from mlfleet.dr.sandbox.fake_kubernetes import FakeKubernetes
        from mlfleet.dr.sandbox.fake_monitoring import FakeMonitoring
        from mlfleet.dr.sandbox.faults import FaultBook, ForwardingProxy, Ledger
        from mlfleet.dr.sandbox.moto_extensions import Extensions
        from mlfleet.dr.sandbox.routing import SandboxRouting

        started = time.monotonic()
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
        try:
            registry_started = self._start_registry()  # in the background while the rest starts
            self.faults, self.ledger = FaultBook(), Ledger()
            self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            self.moto.start()
            self._stack.append(self.moto.stop)
            host, port = self.moto.get_host_and_port()
            self.moto_url = f"http://{host}:{port}"
            registry_started.join()
            if self._registry_error is not None:
                raise self._registry_error
            self.extensions = Extensions(
                self.faults, self.settings, registry=self.registry,
                registry_clusters={naming.db_cluster_id(self.env.name, r.name): r.name
                                   for r in self.env.regions_on("aws")} if self.env.primary.cloud == "aws" else {})
            self.extensions.install()
            self.faults.watch_regions(self._registry_region)
            self.settings.observe(self._registry_settings)
            self._stack.append(self.extensions.stop)
            self.aws_proxy = ForwardingProxy("aws", self.moto_url, self.faults, self.ledger).start()
            self._stack.append(self.aws_proxy.stop)
            self.serving_proxies = {
                r.name: ForwardingProxy(f"serving-{r.name}", None, self.faults, self.ledger,
                                        region=r.name, service="serving").start() for r in self.env.regions}
            self._stack += [p.stop for p in self.serving_proxies.values()]
            self.gcp = FakeGcp(self.faults, self.ledger,
                               replication_lag_s=lambda: self.settings.replication_lag_s).start()
            self.gcp.on_promote = self._promote_gcp_registry
            self._stack.append(self.gcp.stop)
            self.monitoring = FakeMonitoring(self.faults, self.ledger).start()
            self._stack.append(self.monitoring.stop)
            self.transfer: TransferJob | None = None
            self.kube = FakeKubernetes(secrets.token_urlsafe(24), self.faults, self.ledger, self.settings).start()
            self._stack.append(self.kube.stop)
            self.control = ControlServer(secrets.token_urlsafe(24), self.faults, self.settings, self.ledger,
                                         kubernetes=self.kube, remove_image=self.remove_image,
                                         registry=self.registry,
                                         registry_errors=lambda: self.extensions.promotion_errors)
            self.routing = SandboxRouting(self.env, self.extensions).attach(self.control)  # GET /resolve, /routing
            self.admin_token = secrets.token_urlsafe(24)  # before _deploy: the admin Secret carries it
            self._deploy()
            self._start_transfer()
            mlflow_started = self._start_mlflow()  # in the background while the runtimes start
            self._start_runtimes()
            mlflow_started.join()
            if self._mlflow_error is not None:
                raise self._mlflow_error
            self.control.start()
            self._stack.append(self.control.stop)
            self._state = state = SandboxState(
                env=self.env.name, aws_endpoint=self.aws_proxy.url, control_url=self.control.url,
                control_token=self.control.token, admin_token=self.admin_token, gcp_endpoint=self.gcp.url,
                hosted_zone_id=self.outputs["hosted_zone_id"], health_checks=self.outputs["health_checks"],
                serving={name: proxy.url for name, proxy in self.serving_proxies.items()},
                kubernetes={r.name: self.kube.host(r.name) for r in self.env.regions},
                kubernetes_token=self.kube.token,
                registry={r.name: self.registry.dsn(r.name) for r in self.env.regions},
                mlflow={region: server.url for region, server in self.mlflow.items()},
                gcp_monitoring=self.monitoring.address,
                gcp_storage={r.name: self.gcp.region_view(r.name) for r in self.env.regions_on("gcp")})
            self.state_path = state.save(self.state_dir)
            self._stack.append(lambda: self.state_path.unlink(missing_ok=True))
        except BaseException:
            self.down()
            raise
        self.log(f"sandbox for {self.env.name} up in {time.monotonic() - started:.1f}s")
        return state

    @property
    def state(self) -> SandboxState:
        """What `up` wrote to the state file (endpoints, tokens, health checks)."""
        if self._state is None:
            raise DrUsageError(f"the sandbox for {self.env.name} is not up")
        return self._state

    def down(self) -> None:
        while self._stack:
            stop = self._stack.pop()
            try:
                stop()
            except Exception:  # noqa: BLE001 - tear everything down even if one part fails
                pass
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> "Sandbox":
        self.up()
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    def reset(self) -> None:
        """Back to the state right after `up`: no faults, default settings, a fresh deployment,
        the champion pinned in every region. Used between tests sharing one sandbox."""
        self.faults.clear()
        self.settings.update(self._defaults)
        self.extensions.install()  # this sandbox's extensions answer moto's patched calls again
        request = urllib.request.Request(f"{self.moto_url}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=10).close()
        self.extensions.reset()  # after any promotion still pending, so that none runs after this
        self.registry.reset()
        if self.transfer is not None:
            self.transfer.reset()
        self._deploy()
        state = self.state
        state.hosted_zone_id = self.outputs["hosted_zone_id"]
        state.health_checks = self.outputs["health_checks"]
        state.save(self.state_dir)
        for region in self.env.regions:
            self.pin(region.name, self.champion, reload_manifest=True)
        self.wait_healthy()

    # -- the registry databases ---------------------------------------------------------------
    def _start_registry(self) -> threading.Thread:
        """One PostgreSQL server per region (registry_db.py), started in a thread; `up` joins it
        before the clusters are created, since their endpoints are those servers."""
        from mlfleet.dr.sandbox.registry_db import RegistryDatabases

        self.registry = RegistryDatabases([r.name for r in self.env.regions], self._workdir,
                                          writer=self.env.primary.name, log=self.log)
        self._registry_error: BaseException | None = None

        def start() -> None:
            try:
                self.registry.start()
            except BaseException as exc:  # noqa: BLE001 - raised again by `up`
                self._registry_error = exc

        thread = threading.Thread(target=start, name="registry-start", daemon=True)
        thread.start()
        def stop() -> None:
            thread.join()  # never stop servers still starting
            self.registry.stop()

        self._stack.append(stop)
        return thread

    def _start_mlflow(self) -> threading.Thread:
        """One MLflow tracking server per region on its registry database (mlflow_server.py), in a
        thread; after every promotion the new writer's is checked and restarted if it died."""
        from mlfleet.dr.sandbox.mlflow_server import RegistryServers, start_registry_servers

        self.mlflow = RegistryServers(self.registry, {})
        self._mlflow_error: BaseException | None = None
        env_vars = {"AWS_ENDPOINT_URL": self.aws_proxy.url, **SANDBOX_CREDENTIALS}

        def start() -> None:
            if not self.model_registry:
                return
            try:
                self.mlflow = start_registry_servers(self.env, self.registry, self.artifact_location, env_vars,
                                                     self._workdir)
            except BaseException as exc:  # noqa: BLE001 - raised again by `up`
                self._mlflow_error = exc

        thread = threading.Thread(target=start, name="mlflow-start", daemon=True)
        thread.start()

        def stop() -> None:
            thread.join()
            self.mlflow.stop()

        self._stack.append(stop)
        def new_writer(region: str) -> None:
            if region in self.mlflow:
                self.mlflow.on_new_writer(region)

        self.extensions.new_writer_listeners.append(new_writer)
        return thread

    def _registry_region(self, region: str, down: bool) -> None:
        """A region fault stops its database server at once; clearing it starts it again (as a
        standby, rewound, if another region became the writer meanwhile)."""
        try:
            (self.registry.take_down if down else self.registry.bring_up)(region)
        except Exception as exc:  # noqa: BLE001 - the fault stands either way; GET /registry shows the server
            self.log(f"registry server of {region} did not {'stop' if down else 'start'}: {exc}")

    def _registry_settings(self, names: set[str]) -> None:
        if "db_replay_delay_s" in names:
            self.registry.set_replay_delay(self.settings.db_replay_delay_s)

    # -- helpers -----------------------------------------------------------------------------
    def client(self, service: str, region: str, *, direct: bool = False):
        import boto3
        from botocore.config import Config

        return boto3.client(service, region_name=region, endpoint_url=self.moto_url if direct else self.aws_proxy.url,
                            aws_access_key_id=SANDBOX_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=SANDBOX_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                            config=Config(retries={"total_max_attempts": 2}, connect_timeout=2, read_timeout=10))

    def bucket(self, region: str) -> str:
        return naming.artifact_bucket(self.env.name, self.env.aws.account_id, region)

    def _deploy(self) -> None:
        from mlfleet.dr.kms_signer import KmsManifestSigner
        from mlfleet.dr.sandbox.moto_extensions import set_signing_key_material
        from mlfleet.dr.sandbox.world import deploy
        from mlfleet.runtime.examples import write_example_repository
        from mlfleet.runtime.signing import SIGNATURE_FILE

        ports = {name: proxy.port for name, proxy in self.serving_proxies.items()}
        self.outputs = deploy(self.env, lambda service, region: self.client(service, region, direct=True), ports)
        self.outputs.update(self.routing.seed(lambda s, r: self.client(s, r, direct=True), self.outputs,
                                              self.aws_proxy.url))  # ARC routing controls, calculated checks
        on_aws = self.env.primary.cloud == "aws"
        if on_aws:
            set_signing_key_material(self.env.primary.name, self.outputs["signing_key_id"], self._signing_material)
        self._seed_serving_plane()
        self._deploy_gcp()
        repository = self._workdir / "models"
        if not (repository / naming.MANIFEST_FILE).exists():
            manifest = write_example_repository(repository, models=(EXAMPLE_MODEL,))
            self.champion = manifest.models[EXAMPLE_MODEL].champion
        # The champion as a promotion leaves it: signed by the environment's KMS key (Cloud KMS's for a
        # Google primary: the same key material, signed here), in the primary's approved area
        # (replication, or the transfer job, carries it to the standbys).
        primary = self.env.primary.name
        manifest_bytes = (repository / naming.MANIFEST_FILE).read_bytes()
        (repository / SIGNATURE_FILE).write_bytes(self._sign(manifest_bytes))
        alias = naming.manifest_signing_key_alias(self.env.name)
        for region in self.env.regions:  # what each region's serving stack mounts: its own replica's public key
            if region.cloud == "aws":
                region_signer = KmsManifestSigner(self.client("kms", region.name, direct=True), alias, region.name)
                self.public_key_path(region.name).write_bytes(region_signer.public_key_pem())
            else:
                self.public_key_path(region.name).write_bytes(self._public_key_pem())
        prefix = naming.approved_prefix(self.env.artifact_store.models_prefix)
        keys = []
        for path in sorted(p for p in repository.rglob("*") if p.is_file()):
            key = prefix + path.relative_to(repository).as_posix()
            if on_aws:
                self.client("s3", primary, direct=True).put_object(Bucket=self.bucket(primary), Key=key,
                                                                   Body=path.read_bytes())
            else:  # both copies of the dual-region bucket: the state once turbo replication has run
                self.gcp.put_object(self.gcs_bucket, key, path.read_bytes())
            keys.append(key)
        self.wait_replicated(keys)
        if on_aws and self.env.regions_on("gcp"):
            self._transfer_now(keys)

    # -- Google Cloud -------------------------------------------------------------------------
    @property
    def gcs_bucket(self) -> str:
        """The dual-region artifact bucket of the Google Cloud regions."""
        assert self.env.gcp is not None
        return naming.gcs_artifact_bucket(self.env.name, self.env.gcp.project_id)

    def artifact_location(self, region: str) -> str:
        """The region's artifact store: its S3 bucket, or gs://<the dual-region bucket>."""
        return self.bucket(region) if self.env.region(region).cloud == "aws" else f"gs://{self.gcs_bucket}"

    def _public_key_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self._signing_material.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def _sign(self, manifest: bytes) -> bytes:
        """The manifest's signature by the environment's signing key: KMS `Sign` on an AWS primary;
        for a Google primary the Cloud KMS key's signature, made here with the same key material."""
        from mlfleet.dr.kms_signer import KmsManifestSigner
        from mlfleet.dr.sandbox.gcp_world import signing_key_name
        from mlfleet.runtime.signing import sign_manifest_locally

        primary = self.env.primary.name
        if self.env.primary.cloud == "aws":
            signer = KmsManifestSigner(self.client("kms", primary, direct=True),
                                       naming.manifest_signing_key_alias(self.env.name), primary)
            return signer.sign(manifest)
        return sign_manifest_locally(manifest, self._signing_material,
                                     f"{signing_key_name(self.env)}/cryptoKeyVersions/1")

    def _deploy_gcp(self) -> None:
        from mlfleet.dr.sandbox.gcp_world import deploy_gcp

        deploy_gcp(self.env, self.gcp, self.monitoring, public_key_pem=self._public_key_pem().decode(),
                   lag_of=self.registry.replay_lag_s)

    def _start_transfer(self) -> None:
        """The Storage Transfer job of an AWS primary with Google Cloud standbys, on its schedule."""
        if self.env.primary.cloud != "aws" or not self.env.regions_on("gcp"):
            return
        if self.transfer is None:
            self._make_transfer()
        assert self.transfer is not None
        self.transfer.start()
        self._stack.append(self.transfer.stop)

    def _make_transfer(self) -> None:
        from mlfleet.dr.sandbox.gcp_world import TransferJob

        primary = self.env.primary.name
        self.transfer = TransferJob(self.env, self.client("s3", primary, direct=True), self.gcp,
                                    faulted=lambda: self.faults.match(primary, "s3") is not None,
                                    interval_s=self.transfer_interval_s)

    def _transfer_now(self, keys: list[str], timeout_s: float = 30) -> None:
        """One transfer run at deployment, then until the keys are in both copies of the bucket."""
        if self.transfer is None:
            self._make_transfer()
        assert self.transfer is not None
        self.transfer.run_once()
        self.wait_gcs_replicated(keys, timeout_s)

    def wait_gcs_replicated(self, keys: list[str], timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        pair = {location.upper() for location in self.env.gcp_artifact_regions or ()}
        for key in keys:
            while (held := self.gcp.object_locations(self.gcs_bucket, key)) is not None and not pair <= held:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{key} did not reach both copies of gs://{self.gcs_bucket} within {timeout_s}s")
                time.sleep(0.05)

    def _promote_gcp_registry(self, region: str) -> None:
        """A Cloud SQL promotion (replica or DMS destination): the region's PostgreSQL standby becomes
        the writer at once with what it holds; the old writer rejoins as its standby when its region
        is up; the region's MLflow server writes from now on."""
        from mlfleet.dr.gcp import registry_kind
        from mlfleet.dr.sandbox.gcp_world import watch_replica_lag

        time.sleep(self.settings.promotion_s)
        old = self.registry.writer()
        if old != region:
            self.registry.failover(region)
            if not self.faults.region_down(old):
                try:
                    self.registry.rejoin(old)
                except Exception as exc:  # noqa: BLE001 - it rejoins when its region's fault clears
                    self.log(f"registry server of {old} did not rejoin: {exc}")
        watch_replica_lag(self.env, self.monitoring, region, None)
        if registry_kind(self.env, old) is not None:
            watch_replica_lag(self.env, self.monitoring, old, self.registry.replay_lag_s)
        if region in self.mlflow:
            self.mlflow.on_new_writer(region)

    @property
    def example_repository(self) -> Path:
        """The example model repository the sandbox seeded its approved area from."""
        return self._workdir / "models"

    def publish_manifest(self, manifest: bytes) -> None:
        """`manifest` and its signature by the environment's KMS key into the primary's approved
        area, as a promotion leaves them (tests change the champion this way)."""
        primary = self.env.primary.name
        signature = self._sign(manifest)
        prefix = naming.approved_prefix(self.env.artifact_store.models_prefix)
        if self.env.primary.cloud != "aws":  # written in the primary's copy; turbo replication takes it on
            for name, body in ((naming.MANIFEST_FILE, manifest), (naming.MANIFEST_SIGNATURE_FILE, signature)):
                self.gcp.put_object(self.gcs_bucket, prefix + name, body, location=primary.upper())
            return
        s3 = self.client("s3", primary, direct=True)
        s3.put_object(Bucket=self.bucket(primary), Key=prefix + naming.MANIFEST_FILE, Body=manifest)
        s3.put_object(Bucket=self.bucket(primary), Key=prefix + naming.MANIFEST_SIGNATURE_FILE, Body=signature)

    def public_key_path(self, region: str) -> Path:
        """The manifest-signing key's public half as `region`'s runtime is given it (PEM)."""
        return self._workdir / f"manifest-key-{region}.pem"

    def _seed_serving_plane(self) -> None:
        """The runtime image in every region's repository (the state after ECR replication),
        each region's runtime Deployments at their role's replicas, every pod ready, and the admin
        token's Secret (which a platform team creates out of band)."""
        from mlfleet.dr.kube_portforward import ADMIN_SECRET, ADMIN_SECRET_KEY
        from mlfleet.dr.sandbox.moto_extensions import seed_image

        image = self.env.serving.image
        repository = naming.image_repository(self.env.name, image.name)
        replicas = self.env.serving.replicas
        self.kube.clear()
        for region in self.env.regions:
            self.kube.seed_secret(region.name, naming.serving_namespace(), ADMIN_SECRET,
                                  {ADMIN_SECRET_KEY: self.admin_token})
            if region.cloud == "aws":
                seed_image(region.name, repository, image.digest)
                name = f"{self.env.aws.account_id}.dkr.ecr.{region.name}.amazonaws.com/{repository}"
            else:  # Artifact Registry: pushed per region by the release, nothing replicated to simulate
                assert self.env.gcp is not None
                name = naming.gcp_image(self.env.name, self.env.gcp.project_id, region.name, image.name)
            for pool in self.env.serving_pools:
                self.kube.seed(region.name, naming.serving_namespace(), naming.runtime_deployment(pool.name),
                               replicas=replicas.deployed(region.role), image=f"{name}@{image.digest}")

    def remove_image(self, region: str) -> bool:
        """Take the runtime image out of one region's repository (replication that never came)."""
        from mlfleet.dr.sandbox.moto_extensions import remove_image

        image = self.env.serving.image
        return remove_image(region, naming.image_repository(self.env.name, image.name), image.digest)

    def wait_replicated(self, keys: list[str], timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        for standby in self.env.standbys:
            if standby.cloud != "aws" or self.env.primary.cloud != "aws":
                continue  # Google Cloud copies: wait_gcs_replicated
            s3 = self.client("s3", standby.name, direct=True)
            for key in keys:
                while True:
                    try:
                        s3.head_object(Bucket=self.bucket(standby.name), Key=key)
                        break
                    except s3.exceptions.ClientError:
                        if time.monotonic() > deadline:
                            raise TimeoutError(f"{key} did not replicate to {standby.name} "
                                               f"within {timeout_s}s") from None
                        time.sleep(0.05)

    def _start_runtimes(self) -> None:
        from mlfleet.runtime.process import RuntimeProcess

        prefix = naming.approved_prefix(self.env.artifact_store.models_prefix)
        errors: list[BaseException] = []

        def start(region: str) -> None:
            if self.env.region(region).cloud == "aws":
                source = f"s3://{self.bucket(region)}/{prefix}"
                env = {"AWS_ENDPOINT_URL": self.aws_proxy.url, "AWS_REGION": region, **SANDBOX_CREDENTIALS}
            else:  # its own copy of the dual-region bucket, through google-cloud-storage
                assert self.env.gcp is not None
                source = f"gs://{self.gcs_bucket}/{prefix}"
                env = {"STORAGE_EMULATOR_HOST": self.gcp.region_view(region),
                       "GOOGLE_CLOUD_PROJECT": self.env.gcp.project_id}
            runtime = RuntimeProcess(
                source, region=region, admin_token=self.admin_token,
                manifest_public_key=self.public_key_path(region),
                extra_args=["--canary-interval", str(self.canary_interval_s), "--torch-threads", "1"],
                env=env,
                log_path=self._workdir / f"runtime-{region}.log", startup_timeout_s=120, stop_timeout_s=10)
            try:
                runtime.start()
            except BaseException as exc:  # noqa: BLE001 - reported after every region tried
                errors.append(exc)
                return
            self._runtimes[region] = runtime
            self.serving_proxies[region].set_upstream(runtime.http_url)
            self.kube.set_runtime(region, runtime.http_port)  # where its pods' management port leads

        threads = [threading.Thread(target=start, args=(r.name,)) for r in self.env.regions]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self._stack += [r.stop for r in self._runtimes.values()]
        if errors:
            raise RuntimeError(f"a sandbox runtime did not start: {errors[0]}")
        self.wait_healthy()

    def wait_healthy(self, timeout_s: float = 60) -> None:
        """Until every region's runtime reports failover health (its first canary passed)."""
        deadline = time.monotonic() + timeout_s
        for region, proxy in self.serving_proxies.items():
            while True:
                try:
                    health_url = f"{proxy.url}{self.env.serving.failover_health_path}"
                    with urllib.request.urlopen(health_url, timeout=2) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the {region} runtime is not failover-healthy within {timeout_s}s")
                time.sleep(0.1)
        # ...and until every Cloud SQL replica reports its lag (a failover's gate reads it)...
        while self.monitoring is not None and self.monitoring.unmeasured():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no replica_lag datapoint for {self.monitoring.unmeasured()} within {timeout_s}s")
            time.sleep(0.05)
        # ...and until the simulated Route 53 checks agree (FailureThreshold successes in a row).
        for region, check_id in self.outputs["health_checks"].items():
            while not (self.extensions.health(check_id) or {}).get("healthy"):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the Route 53 health check of {region} is not healthy within {timeout_s}s")
                time.sleep(0.05)

    def pin(self, region: str, version: str, *, reload_manifest: bool = False) -> dict:
        body = json.dumps({"version": version, "reload_manifest": reload_manifest}).encode()
        request = urllib.request.Request(
            f"{self._runtimes[region].http_url}/v2/mlfleet/models/{EXAMPLE_MODEL}/pin", data=body, method="POST",
            headers={"Authorization": f"Bearer {self.admin_token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
