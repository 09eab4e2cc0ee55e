"""`mlfleet capacity refresh` rebuilds the GPU offerings table through boto3, here against a
moto server over HTTP, and the environment model validates against the table it wrote."""
from __future__ import annotations

import json
import socket

import pytest
from moto.server import ThreadedMotoServer

from mlfleet.stacks.cli import main
from mlfleet.stacks.environment.offerings import GpuOfferings

pytestmark = pytest.mark.sandbox  # refreshes the table from a moto server


@pytest.fixture(scope="module")
def ec2_endpoint():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def test_refresh_writes_a_dated_table_from_ec2(ec2_endpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AWS_ENDPOINT_URL", ec2_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    out = tmp_path / "offerings.json"
    code = main(["capacity", "refresh", "--regions", "us-east-1", "us-west-1", "--out", str(out),
                 "--source", "test endpoint"])
    assert code == 0, capsys.readouterr().err
    assert "GPU instance types in 2 regions" in capsys.readouterr().out

    table = json.loads(out.read_text())
    assert table["source"] == "test endpoint" and table["generated_at"]
    assert table["instance_types"]["p5.48xlarge"] == {"gpu": "H100", "gpus": 8, "gpu_memory_mib": 655360}
    assert table["instance_types"]["g6e.xlarge"]["gpu"] == "L40S"
    # Fractional and Arm GPU types cannot run the NVIDIA x86_64 serving image.
    assert "g6f.large" not in table["instance_types"] and "g5g.xlarge" not in table["instance_types"]
    offerings = GpuOfferings.load(out)
    assert offerings.offered("g6e.xlarge", "us-east-1")
    assert not offerings.offered("p5e.48xlarge", "us-east-1")
    assert len(table["regions"]["us-west-1"]) < len(table["regions"]["us-east-1"])


def test_shipped_table_says_when_and_where_from():
    shipped = GpuOfferings.load()
    assert shipped.generated_at and "DescribeInstanceTypeOfferings" in shipped.source
    assert shipped.gpus("p4d.24xlarge") == 8
