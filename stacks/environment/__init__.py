"""The environment core: one YAML file per environment, validated once into an `Environment` that
stacks, runbooks, the runtime's deployment and the review all read.

It imports nothing of mlfleet but itself and the shared leaf modules (`mlfleet.constructs.validation`,
`mlfleet.constructs.service_limits`), so every layer may depend on it. Beside the model (`model`,
`regions`, `pools`, `fields`), its cross-field `checks`, the `recovery`, `recovery_time` and `placement` it derives
and the `load`ing of files: the deterministic names (`naming`), the GPU offering tables
(`offerings`, `gcp_offerings`), the shipped example environments (`examples/`) and their JSON
Schema (`environment.schema.json`).
"""
from __future__ import annotations

from mlfleet.stacks.environment.errors import ConfigError, MlfleetError
from mlfleet.stacks.environment.load import (
    ENVIRONMENTS_DIR,
    environment_names,
    json_schema,
    load_environment,
    load_environment_file,
    parse_environment,
)
from mlfleet.stacks.environment.model import (
    Acknowledgement,
    ArtifactStore,
    Aws,
    CloudSqlRegistry,
    Environment,
    Gcp,
    Identities,
    ObjectLock,
    RegistryDatabase,
    RegistrySource,
    Serving,
    Targets,
    is_aws_principal,
)
from mlfleet.stacks.environment.placement import GCS_MULTI_REGIONS, gke_node_locations
from mlfleet.stacks.environment.pools import GcpPoolShape, GpuPool, GpuSharing, Reservation
from mlfleet.stacks.environment.recovery import artifact_rpo
from mlfleet.stacks.environment.regions import (
    AwsRegion,
    ExistingGcpSubnet,
    ExistingNetwork,
    FlowLogs,
    GcpNetwork,
    GcpRegion,
    Network,
    Region,
)

__all__ = [
    "ENVIRONMENTS_DIR", "GCS_MULTI_REGIONS", "Acknowledgement", "ArtifactStore", "Aws", "AwsRegion",
    "CloudSqlRegistry", "ConfigError", "Environment", "ExistingGcpSubnet", "ExistingNetwork", "FlowLogs", "Gcp",
    "GcpNetwork", "GcpPoolShape", "GcpRegion", "GpuPool", "GpuSharing", "Identities", "MlfleetError", "Network",
    "ObjectLock", "Region", "RegistryDatabase", "RegistrySource", "Reservation", "Serving", "Targets", "artifact_rpo",
    "environment_names", "gke_node_locations", "is_aws_principal", "json_schema",
    "load_environment", "load_environment_file", "parse_environment",
]
