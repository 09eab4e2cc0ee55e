"""The Amazon RDS certificate authorities, for clients that verify an Aurora server.

`data/rds-ca-global-bundle.pem` is Amazon RDS's global bundle as published at `RDS_CA_BUNDLE_URL`:
the root CAs (RSA2048 G1, RSA4096 G1, ECC384 G1) of every commercial region. It is data, not code:
refresh it when RDS publishes new CAs (a new region, a CA rotation); see docs/security.md.
"""
from __future__ import annotations

from functools import cache
from pathlib import Path

RDS_CA_BUNDLE_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
BUNDLE_FILE = Path(__file__).parent / "data" / "rds-ca-global-bundle.pem"


@cache
def rds_ca_bundle() -> str:
    """The PEM text of the Amazon RDS global CA bundle shipped with mlfleet."""
    return BUNDLE_FILE.read_text(encoding="ascii")
