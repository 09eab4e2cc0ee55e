"""The DR runbooks' lock table: on demand, encrypted with the given customer-managed key, with
point-in-time recovery and deletion protection; bad props are refused where they are given."""
from __future__ import annotations

import pytest

from mlfleet.constructs.aws.dr_lock_table import DrLockTable, DrLockTableProps
from mlfleet.constructs.policy import evaluate_terraform
from mlfleet.constructs.validation import PropsError

from helpers.template import Template

KEY = "arn:aws:kms:us-west-2:111111111111:key/0123abcd-0000-0000-0000-000000000000"


def props(**overrides) -> DrLockTableProps:
    return DrLockTableProps(**{"table_name": "mlfleet-prod-dr-locks", "kms_key_arn": KEY, **overrides})


def test_the_table_is_on_demand_encrypted_recoverable_and_protected(synth):
    tf = synth(lambda stack: DrLockTable(stack, "dr-lock", props()))
    Template(tf).has_resource_properties("aws_dynamodb_table", {
        "name": "mlfleet-prod-dr-locks", "billing_mode": "PAY_PER_REQUEST", "hash_key": "lock",
        "attribute": [{"name": "lock", "type": "S"}],
        "server_side_encryption": {"enabled": True, "kms_key_arn": KEY},
        "point_in_time_recovery": {"enabled": True}, "deletion_protection_enabled": True})
    assert [f for f in evaluate_terraform("test", tf) if f.rule != "MLF006"] == []  # MLF006: the test provider's tags


def test_the_partition_key_is_the_one_given(synth):
    tf = synth(lambda stack: DrLockTable(stack, "dr-lock", props(key_attribute="run_key")))
    Template(tf).has_resource_properties("aws_dynamodb_table", {
        "hash_key": "run_key", "attribute": [{"name": "run_key", "type": "S"}]})


@pytest.mark.parametrize("overrides, match", [
    ({"table_name": "x"}, "table_name: 'x' is not a DynamoDB table name"),
    ({"table_name": "locks with spaces"}, "table_name: .* is not a DynamoDB table name"),
    ({"kms_key_arn": "AES256"}, "kms_key_arn: 'AES256' is not a KMS key ARN"),
    ({"key_attribute": ""}, "key_attribute: '' is not a DynamoDB attribute name"),
])
def test_invalid_props_are_refused_naming_the_prop(synth, overrides, match):
    with pytest.raises(PropsError, match=match):
        synth(lambda stack: DrLockTable(stack, "dr-lock", props(**overrides)))
