"""mlfleet's policy pass: secure-by-default rules checked on every stack at synth.

`PolicyAspect` is a CDK Aspect. When it visits a stack it evaluates the rule pack on the
stack's resolved Terraform JSON (resources are related through references such as
`${aws_s3_bucket.x.id}`, which only resolve at the stack level) and records each finding,
acknowledged or not. The synth step fails on any unacknowledged finding before anything is
written. An acknowledgement carries a reason: in code (`acknowledgements.acknowledge`) or in
the environment file (`acknowledgements:`), and the review shows it.

The package: `findings` (rules, findings, acknowledgements), `aws_rules` and `gcp_rules` (the
checks of each cloud's resources), `exposure_rules` (what the internet can reach: address ranges,
control planes, load balancers), `iam_rules` (AWS policy documents wherever they live),
`gcp_iam_rules` (Google IAM grants in every form), `serving_rules` (the serving plane's pods, load
balancer TLS and management port), `registry_rules` (who writes the approved models, and that the
runtime verifies them), `engine` (runs them on one stack's JSON), `aspect` (the CDK Aspect).
"""
from __future__ import annotations

from mlfleet.constructs.policy.aspect import PolicyAspect
from mlfleet.constructs.policy.aws_rules import GPU_INSTANCE_FAMILY, is_gpu_instance_type
from mlfleet.constructs.policy.engine import CHECKS, evaluate_terraform
from mlfleet.constructs.policy.findings import REQUIRED_TAGS, RULES, Check, ConfigAcknowledgement, Finding, Rule

__all__ = ["CHECKS", "GPU_INSTANCE_FAMILY", "REQUIRED_TAGS", "RULES", "Check", "ConfigAcknowledgement", "Finding",
           "PolicyAspect", "Rule", "evaluate_terraform", "is_gpu_instance_type"]
