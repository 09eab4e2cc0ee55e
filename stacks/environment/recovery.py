"""Which replication path bounds an environment's recovery point: the RPO it can deliver."""
from __future__ import annotations

from typing import TYPE_CHECKING

from mlfleet.constructs.service_limits import GCS_TURBO_RPO_SECONDS, S3_RTC_RPO_SECONDS, STORAGE_TRANSFER_RPO_SECONDS

if TYPE_CHECKING:
    from mlfleet.stacks.environment.model import Environment


def artifact_rpo(env: Environment) -> tuple[int, str]:
    """The worst-case artifact RPO of the environment's replication paths, and what bounds it."""
    paths = []
    if len(env.regions_on("aws")) > 1:
        paths.append((S3_RTC_RPO_SECONDS, "S3 Replication Time Control"))
    if len(env.regions_on("gcp")) >= 1 and env.primary.cloud == "aws":
        paths.append((STORAGE_TRANSFER_RPO_SECONDS, "Storage Transfer Service's hourly copy to Google Cloud"))
    elif len(env.regions_on("gcp")) > 1:
        paths.append((GCS_TURBO_RPO_SECONDS, "dual-region turbo replication"))
    return max(paths) if paths else (0, "nothing replicated")
