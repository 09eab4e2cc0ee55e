"""Google Cloud constructs: GKE cluster and pools, Cloud Storage artifact store and its grants, Cloud SQL
registry, VPC, Cloud KMS, Cloud Monitoring, service accounts, and what joins an AWS primary to a Google
Cloud standby. Importing this package loads no provider bindings."""
