"""What the HTTP and gRPC front ends share: the models, statistics, health bounds and the
process's lifecycle flags."""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

from .health import HealthBounds
from .manager import ModelManager
from .metrics import Metrics

SERVER_NAME = "mlfleet"
EXTENSIONS = ["binary_tensor_data", "mlfleet_failover_health", "mlfleet_pinning"]

try:
    SERVER_VERSION = version("mlfleet")
except PackageNotFoundError:  # running from a source tree that was not installed
    SERVER_VERSION = "0.0.0"


@dataclass
class RuntimeState:
    manager: ModelManager
    metrics: Metrics
    region: str = "local"
    admin_token: str | None = None  # None: the management endpoint is disabled
    max_body_bytes: int = 64 << 20
    bounds: HealthBounds = field(default_factory=HealthBounds)
    draining: bool = False

    @property
    def ready(self) -> bool:
        return not self.draining and self.manager.all_loaded

    def repository_index(self, ready_only: bool = False) -> list[dict]:
        index = []
        manifest = self.manager.manifest
        for model in sorted(manifest.models if manifest else ()):
            serving = self.manager.active.get(model)
            for approved in sorted(manifest.models[model].versions, key=int):
                loaded = serving is not None and serving.version == approved
                if ready_only and not loaded:
                    continue
                entry = {"name": model, "version": approved, "state": "READY" if loaded else "UNAVAILABLE"}
                if not loaded:
                    entry["reason"] = "approved, not pinned"
                index.append(entry)
        return index
