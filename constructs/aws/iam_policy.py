"""IAM policy documents as mlfleet writes them: sorted keys, so synth output is reproducible."""
from __future__ import annotations

import json


def policy_document(statements: list[dict]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)
