"""AWS constructs: EKS cluster and pools, S3 artifact store and its grants, Aurora registry, VPC, Route 53
routing, CloudWatch alarms, IAM identities. Importing this package loads no provider bindings."""
