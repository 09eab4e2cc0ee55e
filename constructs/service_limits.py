"""Recovery facts and cloud limits: the one place the environment core, the constructs and the review
check against. A leaf module: it imports nothing, so any layer may use it.
"""
from __future__ import annotations

# S3 Replication Time Control replicates 99.99 % of objects within 15 minutes: the best RPO
# the artifact store can promise.
S3_RTC_RPO_SECONDS = 15 * 60
# Aurora global databases replicate in about a second, and `rds.global_db_rpo` cannot be set
# below 20 seconds.
AURORA_MIN_GLOBAL_DB_RPO_SECONDS = 20
# Artifacts reach a Google Cloud standby of an AWS primary through Storage Transfer Service,
# which runs a recurring job at most once an hour: both its shortest repeat and the RPO of that path.
STORAGE_TRANSFER_RPO_SECONDS = 60 * 60
# Within Google Cloud, turbo replication of a dual-region bucket has the same 15-minute
# objective as S3 Replication Time Control.
GCS_TURBO_RPO_SECONDS = 15 * 60
# Without turbo replication, Cloud Storage replicates a dual-region bucket's objects within 12 hours.
GCS_DEFAULT_RPO_SECONDS = 12 * 3600
# Google Cloud's shortest id limits among the names mlfleet derives from an environment's name
# (GKE cluster names, service account ids).
GKE_CLUSTER_NAME_MAX = 40
SERVICE_ACCOUNT_ID_MAX = 30
# The retentions, in days, that CloudWatch Logs accepts for a log group.
CLOUDWATCH_LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192,
                                 2557, 2922, 3288, 3653)
