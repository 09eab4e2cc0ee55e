"""IAM policy documents as mlfleet writes them: sorted keys, so synth output is reproducible; and
the statements every mlfleet bucket policy starts with."""
from __future__ import annotations

import json


def policy_document(statements: list[dict]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)


def tls_only_statements(bucket_arn: str) -> list[dict]:
    """Bucket policy statements that deny every request to the bucket over plaintext or TLS < 1.2."""
    return [{
        "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
        "Resource": [bucket_arn, f"{bucket_arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }, {
        "Sid": "DenyOutdatedTls", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
        "Resource": [bucket_arn, f"{bucket_arn}/*"],
        "Condition": {"NumericLessThan": {"s3:TlsVersion": "1.2"}},
    }]
