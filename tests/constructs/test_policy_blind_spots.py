"""Security v2: Terraform crafted to slip past the rule pack is flagged, and its secure neighbour is
not. Each case is a small Terraform JSON document of plain dicts; `_hits` is every (rule, address)
the pack finds in it."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mlfleet.constructs.policy import RULES, engine, evaluate_terraform
from mlfleet.constructs.policy.exposure_rules import internet_exposure

ACCOUNT = "111122223333"
OTHER_ACCOUNT = "999988887777"
_TAGS = {"owner": "ml-platform", "cost-center": "ml"}
PROVIDERS = {"aws": [{"region": "us-east-1", "allowed_account_ids": [ACCOUNT], "default_tags": [{"tags": _TAGS}]}],
             "google": [{"project": "p", "default_labels": _TAGS}]}
ROOT = Path(__file__).resolve().parents[2]


def _tf(resources: dict, data: dict | None = None) -> dict:
    return {"provider": PROVIDERS, "resource": resources, "data": data or {}}


def _hits(resources: dict, data: dict | None = None, checks=engine.CHECKS) -> set[tuple[str, str]]:
    return {(f.rule, f.address) for f in evaluate_terraform("s", _tf(resources, data), checks)}


def _doc(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


# --- Ingress that adds up to the internet -----------------------------------------------------

@pytest.mark.parametrize("ranges, why", [
    (["0.0.0.0/0"], "whole IPv4 space"),
    (["0.0.0.0/1", "128.0.0.0/1"], "whole IPv4 space"),
    ([f"{i}.0.0.0/9" for i in range(0, 256)] + [f"{i}.128.0.0/9" for i in range(0, 256)], "whole IPv4 space"),
    (["::/1", "8000::/1"], "whole IPv6 space"),
    (["1.0.0.0/7"], "too broad"),            # public and broader than a /8
    (["3.0.0.0/8", "52.0.0.0/8"], "too broad"),  # two /8s: more public addresses than one /8
    (["2600::/12"], "too broad"),
])
def test_ranges_that_admit_the_internet(ranges, why):
    assert why in (internet_exposure(ranges) or "")


@pytest.mark.parametrize("ranges", [
    ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"],  # private, however broad
    ["3.0.0.0/8"],                                     # one organisation-sized public block
    ["203.0.113.0/24", "2001:db8::/32"],
    ["${aws_vpc.v.cidr_block}", "pl-1234"],            # judged where they are defined
])
def test_ranges_that_do_not(ranges):
    assert internet_exposure(ranges) is None


SG = "${aws_security_group.sg.id}"


@pytest.mark.parametrize("resources, flagged", [
    ({"aws_security_group_rule": {"r": {"type": "ingress", "security_group_id": SG, "from_port": 22,
                                        "to_port": 22, "protocol": "tcp", "cidr_blocks": ["0.0.0.0/0"]}}},
     {"aws_security_group_rule.r"}),
    ({"aws_security_group_rule": {"r": {"type": "ingress", "security_group_id": SG, "ipv6_cidr_blocks": ["::/0"]}}},
     {"aws_security_group_rule.r"}),
    # Two rule resources of one group, each half of the internet.
    ({"aws_vpc_security_group_ingress_rule": {"a": {"security_group_id": SG, "cidr_ipv4": "0.0.0.0/1"},
                                              "b": {"security_group_id": SG, "cidr_ipv4": "128.0.0.0/1"}}},
     {"aws_vpc_security_group_ingress_rule.a", "aws_vpc_security_group_ingress_rule.b"}),
    # An inline block and a rule resource of the same group, together.
    ({"aws_security_group": {"sg": {"ingress": [{"cidr_blocks": ["0.0.0.0/1"], "from_port": 443}]}},
      "aws_security_group_rule": {"r": {"type": "ingress", "security_group_id": SG,
                                        "cidr_blocks": ["128.0.0.0/1"]}}},
     {"aws_security_group.sg", "aws_security_group_rule.r"}),
    ({"aws_security_group": {"sg": {"ingress": [{"ipv6_cidr_blocks": ["::/1", "8000::/1"]}]}}},
     {"aws_security_group.sg"}),
    ({"google_compute_firewall": {"f": {"network": "n", "allow": [{"protocol": "tcp"}],
                                        "source_ranges": ["0.0.0.0/1", "128.0.0.0/1"]}}},
     {"google_compute_firewall.f"}),
    # No source at all: Google's default is 0.0.0.0/0.
    ({"google_compute_firewall": {"f": {"network": "n", "allow": [{"protocol": "tcp", "ports": ["22"]}]}}},
     {"google_compute_firewall.f"}),
    ({"google_compute_firewall": {"a": {"network": "n", "allow": [{"protocol": "tcp"}], "source_ranges": ["::/1"]},
                                  "b": {"network": "n", "allow": [{"protocol": "tcp"}],
                                        "source_ranges": ["8000::/1"]}}},
     {"google_compute_firewall.a", "google_compute_firewall.b"}),
], ids=["sg-rule-v4", "sg-rule-v6", "ingress-rules-halves", "inline-plus-rule", "inline-v6-halves",
        "firewall-halves", "firewall-no-source", "firewalls-of-one-network"])
def test_ingress_open_to_the_internet_is_flagged(resources, flagged):
    assert {a for r, a in _hits(resources) if r == "MLF002"} == flagged


@pytest.mark.parametrize("resources", [
    {"aws_security_group_rule": {"r": {"type": "egress", "security_group_id": SG, "cidr_blocks": ["0.0.0.0/0"]}}},
    {"aws_security_group_rule": {"r": {"type": "ingress", "security_group_id": SG, "cidr_blocks": ["10.0.0.0/8"]}}},
    # One public /8 on each of two groups: together too broad, but no group admits more than a /8.
    {"aws_vpc_security_group_ingress_rule": {"a": {"security_group_id": SG, "cidr_ipv4": "3.0.0.0/8"},
                                             "b": {"security_group_id": "sg-2", "cidr_ipv4": "52.0.0.0/8"}}},
    {"aws_security_group": {"sg": {"ingress": [{"cidr_blocks": ["10.40.0.0/16"]}],
                                   "egress": [{"cidr_blocks": ["0.0.0.0/0"]}]}}},
    {"google_compute_firewall": {"f": {"network": "n", "allow": [{"protocol": "tcp"}], "source_tags": ["lb"]}}},
    {"google_compute_firewall": {"f": {"network": "n", "deny": [{"protocol": "all"}], "source_ranges": ["0.0.0.0/0"]}}},
    {"google_compute_firewall": {"f": {"network": "n", "direction": "EGRESS", "allow": [{"protocol": "tcp"}],
                                       "destination_ranges": ["0.0.0.0/0"]}}},
    {"google_compute_firewall": {"f": {"network": "n", "allow": [{"protocol": "tcp"}],
                                       "source_ranges": ["35.191.0.0/16", "130.211.0.0/22"]}}},
], ids=["egress", "private-ingress", "a-block-per-group", "inline-private", "firewall-tags", "firewall-deny",
        "firewall-egress", "firewall-health-checkers"])
def test_narrow_ingress_passes(resources):
    assert _hits(resources) == set()


# --- IAM: partial wildcards, wherever a policy lives -------------------------------------------

def _identity_places(statement: dict) -> dict[str, tuple[dict, dict | None]]:
    """The same statement in every kind of identity policy: {address: (resources, data)}."""
    doc = _doc(statement)
    data_statement = {"effect": statement["Effect"], "resources": ["*"],
                      **({"actions": statement["Action"]} if "Action" in statement else {}),
                      **({"not_actions": statement["NotAction"]} if "NotAction" in statement else {})}
    return {
        "aws_iam_role_policy.p": ({"aws_iam_role_policy": {"p": {"role": "r", "policy": doc}}}, None),
        "aws_iam_policy.p": ({"aws_iam_policy": {"p": {"policy": doc}}}, None),
        "aws_iam_user_policy.p": ({"aws_iam_user_policy": {"p": {"user": "u", "policy": doc}}}, None),
        "aws_iam_group_policy.p": ({"aws_iam_group_policy": {"p": {"group": "g", "policy": doc}}}, None),
        "aws_iam_role.p": ({"aws_iam_role": {"p": {"assume_role_policy": _doc(), "inline_policy": [
            {"name": "i", "policy": doc}]}}}, None),
        "data.aws_iam_policy_document.p": ({}, {"aws_iam_policy_document": {"p": {"statement": [data_statement]}}}),
    }


def _resource_places(statement: dict) -> dict[str, dict]:
    """The same statement (with a narrowed principal) in every kind of resource policy."""
    doc = _doc({**statement, "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:role/reader"}})
    return {"aws_s3_bucket_policy.p": {"aws_s3_bucket_policy": {"p": {"bucket": "b", "policy": doc}}},
            "aws_kms_key.p": {"aws_kms_key": {"p": {"policy": doc}}},
            "aws_sns_topic_policy.p": {"aws_sns_topic_policy": {"p": {"arn": "t", "policy": doc}}},
            "aws_sqs_queue_policy.p": {"aws_sqs_queue_policy": {"p": {"queue_url": "q", "policy": doc}}}}


WILDCARDS = ["s3:Put*", "iam:*Policy", "*:Get*", "s3:*Object*", "S3:?utObject", "s3:*", "*"]


@pytest.mark.parametrize("action", WILDCARDS)
def test_a_wildcard_action_is_flagged_in_every_identity_policy(action):
    for address, (resources, data) in _identity_places(
            {"Effect": "Allow", "Action": [action], "Resource": "*"}).items():
        assert ("MLF005", address) in _hits(resources, data), address


@pytest.mark.parametrize("action", WILDCARDS)
def test_a_wildcard_action_is_flagged_in_every_resource_policy(action):
    for address, resources in _resource_places({"Effect": "Allow", "Action": action, "Resource": "*"}).items():
        assert ("MLF005", address) in _hits(resources), address


def test_a_document_merged_into_a_data_document_is_read():
    merged = _doc({"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"})
    for key in ("source_policy_documents", "override_policy_documents"):
        data = {"aws_iam_policy_document": {"d": {key: [merged], "statement": [
            {"actions": ["s3:GetObject"], "resources": ["arn:aws:s3:::b/*"]}]}}}
        assert _hits({}, data) == {("MLF040", "data.aws_iam_policy_document.d")}, key


def test_not_action_in_an_allow_is_flagged_everywhere():
    for address, (resources, data) in _identity_places(
            {"Effect": "Allow", "NotAction": ["iam:*"], "Resource": "*"}).items():
        assert ("MLF005", address) in _hits(resources, data), address


@pytest.mark.parametrize("statement", [
    {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "arn:aws:s3:::b/*"},
    # A deny may be as broad as it likes, with Action or NotAction.
    {"Effect": "Deny", "Action": "s3:*", "Resource": "*"},
    {"Effect": "Deny", "NotAction": ["s3:Get*"], "Resource": "*"},
    # Wildcards whose expansion is a short fixed list (AWS's own key policy uses them).
    {"Effect": "Allow", "Action": ["kms:GenerateDataKey*", "kms:ReEncrypt*"], "Resource": "*"},
], ids=["exact", "deny-action", "deny-not-action", "narrow-kms-wildcards"])
def test_exact_actions_and_denies_pass(statement):
    for address, (resources, data) in _identity_places(statement).items():
        assert _hits(resources, data) == set(), address


def test_a_key_policy_delegating_to_its_own_account_passes_and_to_another_account_does_not():
    def key(account: str) -> dict:
        return {"aws_kms_key": {"k": {"policy": _doc({"Sid": "AccountAdministers", "Effect": "Allow",
                                                       "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                                                       "Action": "kms:*", "Resource": "*"})}}}
    assert _hits(key(ACCOUNT)) == set()
    assert _hits(key(OTHER_ACCOUNT)) == {("MLF005", "aws_kms_key.k")}
    # A stack that declares no account (a construct alone) cannot tell them apart.
    alone = {"provider": {"aws": [{"region": "us-east-1", "default_tags": [{"tags": _TAGS}]}]},
             "resource": key(OTHER_ACCOUNT)}
    assert evaluate_terraform("s", alone) == []
    # Only the root: a role of the account with kms:* is a wildcard grant.
    role = {"aws_kms_key": {"k": {"policy": _doc({"Effect": "Allow", "Principal": {
        "AWS": f"arn:aws:iam::{ACCOUNT}:role/admin"}, "Action": "kms:*", "Resource": "*"})}}}
    assert _hits(role) == {("MLF005", "aws_kms_key.k")}


@pytest.mark.parametrize("policy_arn, flagged", [
    ("arn:aws:iam::aws:policy/AdministratorAccess", True),
    ("arn:aws:iam::aws:policy/IAMFullAccess", True),
    ("arn:aws:iam::aws:policy/job-function/SystemAdministrator", False),
    ("arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy", False),
])
def test_attached_full_access_managed_policies(policy_arn, flagged):
    resources = {"aws_iam_role_policy_attachment": {"a": {"role": "r", "policy_arn": policy_arn}}}
    assert (("MLF005", "aws_iam_role_policy_attachment.a") in _hits(resources)) is flagged


# --- IAM: iam:PassRole on any role -----------------------------------------------------------

def _role_policy(statement: dict) -> dict:
    return {"aws_iam_role_policy": {"p": {"role": "r", "policy": _doc(statement)}}}


@pytest.mark.parametrize("statement", [
    {"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"},
    {"Effect": "Allow", "Action": "iam:passrole", "Resource": "arn:aws:iam::*:role/*"},
    {"Effect": "Allow", "Action": ["iam:PassRole"], "Resource": [f"arn:aws:iam::{ACCOUNT}:role/*"]},
    {"Effect": "Allow", "Action": "iam:PassRole", "NotResource": f"arn:aws:iam::{ACCOUNT}:role/admin"},
    {"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*",
     "Condition": {"StringLike": {"iam:PassedToService": "*"}}},
    {"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*",
     "Condition": {"StringEqualsIfExists": {"iam:PassedToService": "eks.amazonaws.com"}}},
    {"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"},
], ids=["star", "any-account", "any-role-of-account", "not-resource", "any-service", "if-exists", "not-action"])
def test_passing_any_role_is_flagged(statement):
    assert ("MLF040", "aws_iam_role_policy.p") in _hits(_role_policy(statement))


@pytest.mark.parametrize("statement", [
    {"Effect": "Allow", "Action": "iam:PassRole", "Resource": f"arn:aws:iam::{ACCOUNT}:role/mlfleet-prod-nodes"},
    {"Effect": "Allow", "Action": "iam:PassRole", "Resource": f"arn:aws:iam::{ACCOUNT}:role/mlfleet-*"},
    {"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*",
     "Condition": {"StringEquals": {"iam:PassedToService": "eks.amazonaws.com"}}},
    {"Effect": "Deny", "Action": "iam:PassRole", "Resource": "*"},
], ids=["one-role", "prefixed-roles", "passed-to-one-service", "deny"])
def test_passing_named_roles_or_to_one_service_passes(statement):
    assert _hits(_role_policy(statement)) == set()


# --- Any principal, without a condition that narrows it --------------------------------------

def _trust(statement: dict) -> dict:
    return {"aws_iam_role": {"r": {"assume_role_policy": _doc(
        {"Effect": "Allow", "Action": "sts:AssumeRole", **statement})}}}


def _bucket(statement: dict) -> dict:
    return {"aws_s3_bucket_policy": {"p": {"bucket": "b", "policy": _doc(
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*", **statement})}}}


def _topic(statement: dict) -> dict:
    return {"aws_sns_topic_policy": {"p": {"arn": "t", "policy": _doc(
        {"Effect": "Allow", "Action": "sns:Publish", "Resource": "t", **statement})}}}


def _queue(statement: dict) -> dict:
    return {"aws_sqs_queue": {"q": {"policy": _doc(
        {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "q", **statement})}}}


def _key(statement: dict) -> dict:
    return {"aws_kms_key": {"k": {"policy": _doc({"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*",
                                                   **statement})}}}


PLACES = {"aws_iam_role.r": _trust, "aws_s3_bucket_policy.p": _bucket, "aws_sns_topic_policy.p": _topic,
          "aws_sqs_queue.q": _queue, "aws_kms_key.k": _key}


@pytest.mark.parametrize("statement", [
    {"Principal": "*"},
    {"Principal": {"AWS": "*"}},
    {"Principal": {"AWS": ["arn:aws:iam::111122223333:role/x", "*"]}},
    {"NotPrincipal": {"AWS": f"arn:aws:iam::{ACCOUNT}:role/x"}},
    {"Principal": "*", "Condition": {"StringNotEquals": {"aws:SourceAccount": ACCOUNT}}},
    {"Principal": "*", "Condition": {"StringEqualsIfExists": {"aws:PrincipalOrgID": "o-abc123"}}},
    {"Principal": "*", "Condition": {"ArnLike": {"aws:SourceArn": "*"}}},
    {"Principal": "*", "Condition": {"ArnLike": {"aws:SourceArn": "arn:aws:sns:us-east-1:*:topic"}}},
    {"Principal": "*", "Condition": {"StringLike": {"aws:PrincipalAccount": "*"}}},
    {"Principal": "*", "Condition": {"IpAddress": {"aws:SourceIp": ["0.0.0.0/1", "128.0.0.0/1"]}}},
    {"Principal": "*", "Condition": {"Bool": {"aws:SecureTransport": "true"}}},
    {"Principal": "*", "Condition": {"ForAllValues:StringEquals": {"aws:PrincipalOrgID": ["o-abc123"]}}},
], ids=["star", "aws-star", "aws-list-with-star", "not-principal", "not-equals", "if-exists", "any-source-arn",
        "any-account-arn", "any-account", "source-ip-internet", "unrelated-condition", "for-all-values"])
def test_any_principal_without_a_narrowing_condition_is_flagged(statement):
    for address, place in PLACES.items():
        assert ("MLF041", address) in _hits(place(statement)), address


@pytest.mark.parametrize("statement", [
    {"Principal": "*", "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}}},
    {"Principal": "*", "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-abc123"}}},
    {"Principal": "*", "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::mlfleet-{ACCOUNT}-*"}}},
    {"Principal": "*", "Condition": {"ArnEquals": {"aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:role/x"}}},
    {"Principal": "*", "Condition": {"StringEquals": {"aws:SourceVpce": "vpce-0abc"}}},
    {"Principal": "*", "Condition": {"IpAddress": {"aws:SourceIp": "203.0.113.0/24"}}},
    {"Principal": "*", "Condition": {"stringequals": {"AWS:SOURCEACCOUNT": ACCOUNT}}},
    {"Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:role/x"}},
    {"Principal": {"Service": "s3.amazonaws.com"}},
], ids=["source-account", "org", "source-arn-of-account", "principal-arn", "vpce", "source-ip", "case-insensitive",
        "named-role", "service"])
def test_a_narrowed_or_named_principal_passes(statement):
    for address, place in PLACES.items():
        assert ("MLF041", address) not in _hits(place(statement)), address


def test_a_public_deny_passes():
    assert _hits(_bucket({"Effect": "Deny", "Action": "s3:*", "Principal": "*",
                          "Condition": {"Bool": {"aws:SecureTransport": "false"}}})) == set()


def test_a_public_principal_in_a_data_document_is_flagged():
    def data(principals: dict, condition: list | None = None) -> dict:
        statement = {"effect": "Allow", "actions": ["sts:AssumeRole"], "principals": [principals]}
        return {"aws_iam_policy_document": {"d": {"statement": [
            {**statement, **({"condition": condition} if condition else {})}]}}}
    address = ("MLF041", "data.aws_iam_policy_document.d")
    assert address in _hits({}, data({"type": "*", "identifiers": ["*"]}))
    assert address in _hits({}, data({"type": "AWS", "identifiers": ["*"]}))
    assert address not in _hits({}, data({"type": "AWS", "identifiers": ["*"]}, [
        {"test": "StringEquals", "variable": "aws:PrincipalOrgID", "values": ["o-abc123"]}]))


@pytest.mark.parametrize("federated, condition, flagged", [
    ("accounts.google.com", None, True),
    ("accounts.google.com", {"StringEquals": {"accounts.google.com:aud": "x"}}, True),
    ("accounts.google.com", {"StringEquals": {"accounts.google.com:sub": "104444444444444444444"}}, False),
    (f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com",
     {"StringEquals": {"token.actions.githubusercontent.com:aud": "sts.amazonaws.com"}}, True),
    (f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com",
     {"StringLike": {"token.actions.githubusercontent.com:sub": "*"}}, True),
    (f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com",
     {"StringLike": {"token.actions.githubusercontent.com:sub": "repo:example/mlfleet:*"}}, False),
    ("cognito-identity.amazonaws.com",
     {"StringEquals": {"cognito-identity.amazonaws.com:aud": "us-east-1:1111-2222"}}, False),
    (f"arn:aws:iam::{ACCOUNT}:saml-provider/corp", None, False),
], ids=["google-no-condition", "google-aud-only", "google-sub", "github-aud-only", "github-any-sub", "github-repo",
        "cognito-pool", "saml"])
def test_web_identity_federation_must_pin_the_subject(federated, condition, flagged):
    statement = {"Principal": {"Federated": federated}, "Action": "sts:AssumeRoleWithWebIdentity",
                 **({"Condition": condition} if condition else {})}
    assert (("MLF041", "aws_iam_role.r") in _hits(_trust(statement))) is flagged


# --- Instance metadata, databases --------------------------------------------------------------

@pytest.mark.parametrize("rtype", ["aws_launch_template", "aws_instance"])
@pytest.mark.parametrize("options, flagged", [
    ({"http_tokens": "required", "http_put_response_hop_limit": 1}, False),
    ({"http_tokens": "required", "http_put_response_hop_limit": 2}, True),
    ({"http_tokens": "required"}, True),  # the AMI's default: 2 on current EKS AMIs
    ({"http_tokens": "optional", "http_put_response_hop_limit": 1}, True),
    ({"http_endpoint": "disabled"}, False),
])
def test_instance_metadata_is_for_the_node_only(rtype, options, flagged):
    assert (("MLF007", f"{rtype}.m") in _hits({rtype: {"m": {"metadata_options": options}}})) is flagged


GOOD_DB_INSTANCE = {"engine": "postgres", "storage_encrypted": True, "kms_key_id": "${aws_kms_key.k.arn}",
                    "deletion_protection": True, "publicly_accessible": False,
                    "parameter_group_name": "${aws_db_parameter_group.tls.name}"}
TLS_PARAMETERS = {"aws_db_parameter_group": {"tls": {"family": "postgres16", "parameter": [
    {"name": "rds.force_ssl", "value": "1"}]}}}


@pytest.mark.parametrize("change, rule", [
    ({"publicly_accessible": True}, "MLF002"),
    ({"storage_encrypted": None}, "MLF001"),
    ({"kms_key_id": None}, "MLF001"),
    ({"deletion_protection": False}, "MLF003"),
    ({"skip_final_snapshot": True}, "MLF003"),
])
def test_db_instance(change, rule):
    assert _hits({"aws_db_instance": {"d": GOOD_DB_INSTANCE}, **TLS_PARAMETERS}) == set()
    assert _hits({"aws_db_instance": {"d": {**GOOD_DB_INSTANCE, **change}}, **TLS_PARAMETERS}) == {
        (rule, "aws_db_instance.d")}


def test_an_unencrypted_cluster_is_exempt_only_as_a_global_cluster_member():
    cluster = {"kms_key_id": "k", "deletion_protection": True}
    assert _hits({"aws_rds_cluster": {"c": {**cluster, "global_cluster_identifier": "g"}}}) == set()
    for empty in ("", None):
        assert _hits({"aws_rds_cluster": {"c": {**cluster, "global_cluster_identifier": empty}}}) == {
            ("MLF001", "aws_rds_cluster.c")}


# --- GKE control plane, Cloud SQL networks ----------------------------------------------------

def _gke(private: dict, networks: dict | None) -> dict:
    cluster = {"database_encryption": {"state": "ENCRYPTED", "key_name": "k"},
               "private_cluster_config": {"enable_private_nodes": True, **private}}
    if networks is not None:
        cluster["master_authorized_networks_config"] = networks
    return {"google_container_cluster": {"c": cluster}}


@pytest.mark.parametrize("private, networks, flagged", [
    ({"enable_private_endpoint": True}, {"gcp_public_cidrs_access_enabled": False}, False),
    ({"enable_private_endpoint": False}, {"cidr_blocks": [{"cidr_block": "203.0.113.0/24"}]}, False),
    ({"enable_private_endpoint": False}, {"cidr_blocks": [{"cidr_block": "0.0.0.0/0"}]}, True),
    ({}, {"cidr_blocks": [{"cidr_block": "0.0.0.0/1"}, {"cidr_block": "128.0.0.0/1"}]}, True),
    ({"enable_private_endpoint": False}, None, True),
    ({"enable_private_endpoint": True}, {"gcp_public_cidrs_access_enabled": True}, True),
], ids=["private", "public-narrow", "public-open", "public-halves", "public-unrestricted", "google-public-cidrs"])
def test_gke_control_plane(private, networks, flagged):
    assert (("MLF002", "google_container_cluster.c") in _hits(_gke(private, networks))) is flagged


@pytest.mark.parametrize("networks, flagged", [
    ([{"value": "203.0.113.0/24"}], False),
    ([{"value": "0.0.0.0/1"}, {"value": "128.0.0.0/1"}], True),
    ([{"value": "0.0.0.0/0"}], True),
])
def test_cloud_sql_authorized_networks(networks, flagged):
    instance = {"encryption_key_name": "k", "deletion_protection": True, "settings": {
        "deletion_protection_enabled": True, "ip_configuration": {"ipv4_enabled": False,
                                                                  "authorized_networks": networks}}}
    hits = _hits({"google_sql_database_instance": {"db": instance}})
    assert (("MLF002", "google_sql_database_instance.db") in hits) is flagged


# --- Google IAM: policies, public members, acting as every service account --------------------

def _policy_data(role: str, *members: str) -> str:
    return json.dumps({"bindings": [{"role": role, "members": list(members)}]})


SA = "serviceAccount:s@p.iam.gserviceaccount.com"


@pytest.mark.parametrize("rtype", ["google_project_iam_policy", "google_storage_bucket_iam_policy",
                                   "google_service_account_iam_policy"])
def test_public_members_in_an_iam_policy_are_flagged(rtype):
    resources = {rtype: {"p": {"policy_data": _policy_data("roles/storage.objectViewer", SA, "allUsers")}}}
    assert ("MLF002", f"{rtype}.p") in _hits(resources)
    clean = {rtype: {"p": {"policy_data": _policy_data("roles/storage.objectViewer", SA)}}}
    assert _hits(clean) == set()


def test_public_members_in_a_policy_data_source_are_flagged():
    data = {"google_iam_policy": {"d": {"binding": [{"role": "roles/storage.objectViewer",
                                                      "members": ["allAuthenticatedUsers"]}]}}}
    assert _hits({}, data) == {("MLF002", "data.google_iam_policy.d")}


@pytest.mark.parametrize("role", ["roles/iam.serviceAccountTokenCreator", "roles/iam.serviceAccountUser",
                                  "roles/iam.workloadIdentityUser", "roles/iam.serviceAccountKeyAdmin"])
@pytest.mark.parametrize("rtype, grant", [
    ("google_project_iam_member", lambda role: {"project": "p", "role": role, "member": SA}),
    ("google_folder_iam_binding", lambda role: {"folder": "folders/1", "role": role, "members": [SA]}),
    ("google_organization_iam_member", lambda role: {"org_id": "1", "role": role, "member": SA}),
    ("google_project_iam_policy", lambda role: {"project": "p", "policy_data": _policy_data(role, SA)}),
], ids=["project-member", "folder-binding", "organization-member", "project-policy"])
def test_acting_as_every_service_account_is_flagged(role, rtype, grant):
    assert _hits({rtype: {"g": grant(role)}}) == {("MLF042", f"{rtype}.g")}


def test_acting_as_one_service_account_passes():
    grant = {"service_account_id": "${google_service_account.training.name}",
             "role": "roles/iam.serviceAccountTokenCreator", "member": "group:ml-training@example.com"}
    assert _hits({"google_service_account_iam_member": {"g": grant}}) == set()


def test_a_project_policy_data_source_and_a_custom_role_that_impersonate_are_flagged():
    data = {"google_iam_policy": {"d": {"binding": [{"role": "roles/iam.serviceAccountUser", "members": [SA]}]}}}
    reference = "${data.google_iam_policy.d.policy_data}"
    using = {"google_project_iam_policy": {"p": {"project": "p", "policy_data": reference}}}
    assert _hits(using, data) == {("MLF042", "data.google_iam_policy.d")}
    # The same data source on one service account is fine.
    one = {"google_service_account_iam_policy": {"p": {"service_account_id": "s",
                                                       "policy_data": reference}}}
    assert _hits(one, data) == set()
    custom = {"google_project_iam_custom_role": {"minter": {"role_id": "minter", "permissions": [
        "iam.serviceAccounts.getAccessToken"]}},
        "google_project_iam_member": {"g": {"role": "${google_project_iam_custom_role.minter.id}", "member": SA}}}
    assert _hits(custom) == {("MLF042", "google_project_iam_member.g")}


# --- Neighbours: load balancers, EKS endpoint, ACLs ---------------------------------------------

def _service(annotations: dict, **spec) -> dict:
    return {"kubernetes_service_v1": {"lb": {"metadata": {"annotations": annotations},
                                             "spec": {"type": "LoadBalancer", **spec}}}}


_SCHEME = "service.beta.kubernetes.io/aws-load-balancer-scheme"


@pytest.mark.parametrize("resources, flagged", [
    ({"aws_lb": {"lb": {"load_balancer_type": "network"}}}, True),
    ({"aws_lb": {"lb": {"internal": False}}}, True),
    ({"aws_lb": {"lb": {"internal": True}}}, False),
    (_service({_SCHEME: "internet-facing"}), True),
    (_service({_SCHEME: "internet-facing"}, load_balancer_source_ranges=["0.0.0.0/1", "128.0.0.0/1"]), True),
    (_service({_SCHEME: "internet-facing"}, load_balancer_source_ranges=["203.0.113.0/24"]), False),
    (_service({}), True),  # the cloud's own load balancer: public by default
    (_service({}, load_balancer_class="service.k8s.aws/nlb"), False),  # the controller's default: internal
    (_service({_SCHEME: "internal"}, load_balancer_source_ranges=["0.0.0.0/0"]), False),
    (_service({"networking.gke.io/load-balancer-type": "Internal"}), False),
], ids=["lb-default", "lb-public", "lb-internal", "service-internet-facing", "service-open-halves",
        "service-narrow-ranges", "service-cloud-default", "service-controller-default", "service-internal",
        "service-gke-internal"])
def test_internet_facing_load_balancers(resources, flagged):
    assert bool({r for r, _ in _hits(resources)} & {"MLF002"}) is flagged


def test_a_public_eks_endpoint_names_the_ranges_it_admits():
    cluster = {"encryption_config": {"provider": {}}, "vpc_config": {"endpoint_public_access": True}}
    [finding] = evaluate_terraform("s", _tf({"aws_eks_cluster": {"c": cluster}}))
    assert finding.rule == "MLF002" and "whole IPv4 space" in finding.message
    cluster["vpc_config"]["public_access_cidrs"] = ["0.0.0.0/1", "128.0.0.0/1"]
    [finding] = evaluate_terraform("s", _tf({"aws_eks_cluster": {"c": cluster}}))
    assert "whole IPv4 space" in finding.message


@pytest.mark.parametrize("resources, flagged", [
    ({"aws_s3_bucket_acl": {"a": {"bucket": "b", "acl": "public-read"}}}, True),
    ({"aws_s3_bucket_acl": {"a": {"bucket": "b", "acl": "authenticated-read"}}}, True),
    ({"aws_s3_bucket_acl": {"a": {"bucket": "b", "access_control_policy": {"grant": [{"permission": "READ", "grantee": {
        "type": "Group", "uri": "http://acs.amazonaws.com/groups/global/AllUsers"}}], "owner": {"id": "o"}}}}},
     True),
    ({"aws_s3_bucket_acl": {"a": {"bucket": "b", "acl": "private"}}}, False),
    ({"aws_s3_object": {"a": {"bucket": "b", "key": "k", "acl": "public-read-write"}}}, True),
    ({"google_storage_bucket_acl": {"a": {"bucket": "b", "role_entity": ["READER:allUsers"]}}}, True),
    ({"google_storage_object_acl": {"a": {"bucket": "b", "object": "o", "predefined_acl": "publicRead"}}}, True),
    ({"google_storage_default_object_access_control": {"a": {"bucket": "b", "role": "READER",
                                                             "entity": "allAuthenticatedUsers"}}}, True),
    ({"google_storage_bucket_acl": {"a": {"bucket": "b", "role_entity": ["OWNER:user-x@example.com"]}}}, False),
], ids=["s3-public-read", "s3-authenticated-read", "s3-grant-all-users", "s3-private", "s3-object", "gcs-bucket-acl",
        "gcs-object-predefined", "gcs-default-object", "gcs-owner"])
def test_public_acls(resources, flagged):
    assert bool({r for r, _ in _hits(resources)} & {"MLF002"}) is flagged


# --- Hardening the stacks hold (MLF043–MLF047, and the external Gateway under MLF002) ----------

_HARDENING_RULES = {"MLF002", "MLF043", "MLF044", "MLF045", "MLF046", "MLF047"}


def _hardening(resources: dict, data: dict | None = None, rules: set[str] = _HARDENING_RULES) -> set[tuple[str, str]]:
    """The pack's hits of the hardening rules alone (the crafted resources break others on purpose)."""
    return {hit for hit in _hits(resources, data) if hit[0] in rules}


def _postgres(group: dict | None, engine_name: str = "aurora-postgresql") -> dict:
    cluster = {"engine": engine_name}
    resources: dict = {"aws_rds_cluster": {"c": cluster}}
    if group is not None:
        cluster["db_cluster_parameter_group_name"] = "${aws_rds_cluster_parameter_group.g.name}"
        resources["aws_rds_cluster_parameter_group"] = {"g": {"family": "aurora-postgresql16", **group}}
    return resources


def test_postgres_must_force_tls():
    forced = {"parameter": [{"name": "rds.global_db_rpo", "value": "900"}, {"name": "rds.force_ssl", "value": "1"}]}
    assert _hardening(_postgres(forced)) == set()
    assert _hardening(_postgres({"parameter": [{"name": "rds.force_ssl", "value": "0"}]})) == {
        ("MLF046", "aws_rds_cluster_parameter_group.g")}
    assert _hardening(_postgres(None)) == {("MLF046", "aws_rds_cluster.c")}
    assert _hardening(_postgres(None, "aurora-mysql")) == set()
    instance = {"aws_db_instance": {"d": {"engine": "postgres",
                                          "parameter_group_name": "${aws_db_parameter_group.g.name}"}},
                "aws_db_parameter_group": {"g": {"family": "postgres16", "parameter": []}}}
    assert _hardening(instance) == {("MLF046", "aws_db_parameter_group.g")}


@pytest.mark.parametrize("condition, flagged", [
    ({}, True),
    ({"StringEquals": {}}, True),
    ({"StringEquals": {"aws:SourceAccount": []}}, True),
    ({"StringEquals": {"aws:SourceAccount": ACCOUNT}}, False),
    (None, False),
])
def test_empty_conditions(condition, flagged):
    statement = {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "k",
                 **({"Condition": condition} if condition is not None else {})}
    assert (("MLF043", "aws_iam_role_policy.p") in _hardening(_role_policy(statement))) is flagged


def test_an_empty_condition_in_a_data_document():
    data = {"aws_iam_policy_document": {"d": {"statement": [{"actions": ["kms:Decrypt"], "resources": ["k"],
                                                             "condition": [{"test": "StringEquals",
                                                                            "variable": "aws:SourceAccount",
                                                                            "values": []}]}]}}}
    assert _hardening({}, data) == {("MLF043", "data.aws_iam_policy_document.d")}


def test_an_empty_condition_on_a_google_grant():
    grant = {"project": "p", "role": "roles/storage.objectViewer", "member": SA,
             "condition": {"title": "models only", "expression": ""}}
    assert _hardening({"google_project_iam_member": {"g": grant}}) == {("MLF043", "google_project_iam_member.g")}
    grant["condition"]["expression"] = 'resource.name.startsWith("projects/_/buckets/b/objects/models/")'
    assert _hardening({"google_project_iam_member": {"g": grant}}) == set()


def test_vpcs_need_flow_logs_and_endpoints_need_policies():
    vpc = {"aws_vpc": {"v": {"cidr_block": "10.0.0.0/16"}}}
    assert _hardening(vpc) == {("MLF044", "aws_vpc.v")}
    assert _hardening({**vpc, "aws_flow_log": {"f": {"vpc_id": "${aws_vpc.v.id}", "traffic_type": "ALL"}}}) == set()
    endpoint = {"vpc_id": "${aws_vpc.v.id}", "service_name": "com.amazonaws.us-east-1.s3"}
    assert _hardening({"aws_vpc_endpoint": {"e": endpoint}}) == {("MLF045", "aws_vpc_endpoint.e")}
    with_policy = {**endpoint, "policy": _doc({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                                               "Resource": "*",
                                               "Condition": {"StringEquals": {"aws:ResourceAccount": ACCOUNT}}})}
    assert _hardening({"aws_vpc_endpoint": {"e": with_policy}}) == set()
    # An endpoint policy narrowed to the account's own resources is no public principal either.
    assert _hits({"aws_vpc_endpoint": {"e": with_policy}}) == set()
    attached = {"aws_vpc_endpoint": {"e": endpoint},
                "aws_vpc_endpoint_policy": {"p": {"vpc_endpoint_id": "${aws_vpc_endpoint.e.id}", "policy": "{}"}}}
    assert _hardening(attached) == set()


def test_gke_binary_authorization_and_external_gateways():
    cluster = {"binary_authorization": {"evaluation_mode": "PROJECT_SINGLETON_POLICY_ENFORCE"}}
    only = {"MLF047"}  # the crafted clusters have public control planes too (MLF002)
    assert _hardening({"google_container_cluster": {"c": cluster}}, rules=only) == set()
    assert _hardening({"google_container_cluster": {"c": {}}}, rules=only) == {("MLF047", "google_container_cluster.c")}
    assert _hardening({"google_container_cluster": {"c": {"binary_authorization": {
        "evaluation_mode": "DISABLED"}}}}, rules=only) == {("MLF047", "google_container_cluster.c")}

    def gateway(gateway_class: str) -> dict:
        return {"kubernetes_manifest": {"gw": {"manifest": {"kind": "Gateway", "metadata": {"name": "g"},
                                                            "spec": {"gatewayClassName": gateway_class}}}}}
    assert _hardening(gateway("gke-l7-regional-external-managed")) == {("MLF002", "kubernetes_manifest.gw")}
    assert _hardening(gateway("gke-l7-rilb")) == set()


# --- The rule table and its documentation -------------------------------------------------------

def test_every_rule_a_check_yields_is_in_the_table_and_documented():
    sources = "".join(p.read_text() for p in (ROOT / "constructs" / "policy").glob("*_rules.py"))
    yielded = set(re.findall(r'"(MLF\d{3})"', sources))
    assert yielded and yielded <= set(RULES)
    readme = (ROOT / "README.md").read_text()
    section = (ROOT / "docs" / "security.md").read_text().split("## The rule pack", 1)[1]
    for rule in RULES.values():
        assert rule.title and rule.severity in {"high", "medium", "low"} and rule.fix
        assert f"| {rule.id} |" in readme, rule.id
    for rule in [r for r in RULES if r >= "MLF040"]:
        assert f"| {rule} |" in section, rule


# --- Secrets in Terraform state (MLF048) ------------------------------------------------------

@pytest.mark.parametrize("rtype, body, flagged", [
    ("aws_db_instance", {"password": "hunter2"}, True),
    ("aws_db_instance", {"password_wo": "hunter2", "password_wo_version": 1}, False),
    ("aws_rds_cluster", {"master_password": "${random_password.p.result}"}, True),
    ("aws_rds_cluster", {"manage_master_user_password": True}, False),
    ("google_sql_user", {"password": "${data.google_secret_manager_secret_version.s.secret_data}"}, True),
    ("google_sql_user", {"password_wo": "x", "password_wo_version": "1"}, False),
    ("google_database_migration_service_connection_profile", {"postgresql": {"password": "x"}}, True),
    ("google_database_migration_service_connection_profile", {"mysql": [{"password": "x"}]}, True),
    ("google_database_migration_service_connection_profile",
     {"alloydb": {"settings": {"initial_user": {"user": "u", "password": "x"}}}}, True),
    ("google_database_migration_service_connection_profile", {"postgresql": {"cloud_sql_id": "i"}}, False),
    ("aws_ssm_parameter", {"type": "SecureString", "value": "x"}, True),
    ("aws_ssm_parameter", {"type": "String", "value": "not a secret"}, False),
    ("aws_secretsmanager_secret_version", {"secret_string": "x"}, True),
    ("aws_secretsmanager_secret_version", {"secret_string_wo": "x", "secret_string_wo_version": 1}, False),
])
def test_secrets_that_terraform_keeps_in_state(rtype, body, flagged):
    assert (("MLF048", f"{rtype}.r") in _hits({rtype: {"r": body}})) is flagged



@pytest.mark.parametrize("resource, flagged", [
    ("arn:aws:s3:::prod-us-east-1-starport-layer-bucket/*", False),   # a named bucket, any key in it
    ("arn:aws:s3:::*/*", True),
    ("arn:aws:s3:::prod-*-starport-layer-bucket/*", True),
    ("arn:aws:ecr:us-east-1:602401143452:repository/*", False),       # a named account's repositories
    ("arn:aws:ecr:us-east-1:*:repository/*", True),
    ("*", True),
])
def test_an_endpoint_policy_may_admit_any_caller_of_the_vpc_to_named_resources_only(resource, flagged):
    policy = _doc({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": resource})
    endpoint = {"aws_vpc_endpoint": {"e": {"vpc_id": "v", "service_name": "s", "policy": policy}}}
    assert (("MLF041", "aws_vpc_endpoint.e") in _hits(endpoint)) is flagged
    # Anywhere else, any principal needs a narrowing condition whatever the resource.
    bucket = {"aws_s3_bucket_policy": {"b": {"bucket": "x", "policy": policy}}}
    assert ("MLF041", "aws_s3_bucket_policy.b") in _hits(bucket)
