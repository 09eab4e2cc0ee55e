"""`mlfleet capacity refresh --cloud gcp` rebuilds the Google accelerator table through the real
google-cloud-compute client (REST), here against the sandbox's fake Google endpoint over HTTP;
the loader reads back what it wrote, and failures leave the table as it was."""
from __future__ import annotations

import datetime as dt
import json
import socket

import pytest

from mlfleet.stacks.cli import main
from mlfleet.stacks.environment.gcp_offerings import GCP_TABLE, GcpAcceleratorOfferings, dumps_table

pytestmark = pytest.mark.sandbox  # refreshes the table from the fake Google endpoint

PROJECT = "p-test-123"
AGGREGATED = f"/compute/v1/projects/{PROJECT}/aggregated/acceleratorTypes"


@pytest.fixture
def fake():
    from mlfleet.dr.sandbox.fake_gcp import FakeGcp
    from mlfleet.dr.sandbox.faults import FaultBook, Ledger

    fake = FakeGcp(FaultBook(), Ledger()).start()
    seed = {
        "europe-west4-a": [("nvidia-h100-80gb", "NVIDIA H100 80GB", 8), ("nvidia-l4", "NVIDIA L4", 8)],
        "us-central1-a": [("nvidia-l4", "NVIDIA L4", 8), ("nvidia-tesla-t4", "NVIDIA T4", 4),
                          ("nvidia-tesla-t4-vws", "NVIDIA Tesla T4 Virtual Workstation", 4),
                          ("tpu-v5-lite-podslice", "TPU v5 lite", 8)],
        "us-central1-b": [("nvidia-l4", "NVIDIA L4", 8), ("nvidia-tesla-t4", "NVIDIA T4", 2)],
    }
    for zone, types in seed.items():
        for name, description, cards in types:
            fake.add_accelerator_type(PROJECT, zone, name, description, cards)
    fake.add_zone(PROJECT, "us-central1-f")  # listed, offers nothing
    fake.accelerator_page_size = 2  # four zones: two pages the client must follow
    yield fake
    fake.stop()


def refresh(url: str, out, capsys, *extra: str) -> tuple[int, str, str]:
    code = main(["capacity", "refresh", "--cloud", "gcp", "--project", PROJECT, "--endpoint", url,
                 "--out", str(out), "--source", "test endpoint", *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_refresh_writes_the_nvidia_table_from_compute(fake, tmp_path, capsys):
    out = tmp_path / "gcp.json"
    code, stdout, err = refresh(fake.url, out, capsys)
    assert code == 0, err
    assert "3 accelerator types in 3 zones of 2 regions" in stdout and str(out) in stdout
    # Virtual-workstation and non-NVIDIA types are left out; the most cards any zone allows wins.
    assert json.loads(out.read_text()) == {
        "generated_at": dt.date.today().isoformat(),
        "source": "test endpoint",
        "accelerator_types": {
            "nvidia-h100-80gb": {"description": "NVIDIA H100 80GB", "max_per_instance": 8},
            "nvidia-l4": {"description": "NVIDIA L4", "max_per_instance": 8},
            "nvidia-tesla-t4": {"description": "NVIDIA T4", "max_per_instance": 4},
        },
        "zones": {
            "europe-west4-a": ["nvidia-h100-80gb", "nvidia-l4"],
            "us-central1-a": ["nvidia-l4", "nvidia-tesla-t4"],
            "us-central1-b": ["nvidia-l4", "nvidia-tesla-t4"],
        },
    }
    assert fake.ledger.count(service="compute", method="GET", path=AGGREGATED) == 2
    assert '  "us-central1-a": ["nvidia-l4", "nvidia-tesla-t4"],\n' in out.read_text()  # a zone a line

    offerings = GcpAcceleratorOfferings.load(out)
    assert offerings.zones_offering("nvidia-l4", "us-central1") == ("us-central1-a", "us-central1-b")
    assert offerings.zones_offering("nvidia-h100-80gb", "us-central1") == ()
    assert offerings.regions() == {"us-central1", "europe-west4"}
    assert offerings.max_per_instance("nvidia-tesla-t4") == 4
    assert not offerings.is_accelerator("nvidia-tesla-t4-vws")


def test_regions_filter_keeps_their_zones_and_types(fake, tmp_path, capsys):
    out = tmp_path / "gcp.json"
    assert refresh(fake.url, out, capsys)[0] == 0
    assert GcpAcceleratorOfferings.load(out).regions() == {"us-central1", "europe-west4"}
    code, stdout, err = refresh(fake.url, out, capsys, "--regions", "europe-west4")
    assert code == 0, err
    # The loader's cache does not hide the table just written.
    assert GcpAcceleratorOfferings.load(out).regions() == {"europe-west4"}
    table = json.loads(out.read_text())
    assert table["zones"] == {"europe-west4-a": ["nvidia-h100-80gb", "nvidia-l4"]}
    assert sorted(table["accelerator_types"]) == ["nvidia-h100-80gb", "nvidia-l4"]
    assert "2 accelerator types in 1 zones of 1 regions" in stdout


def test_unknown_region_is_a_usage_error(fake, tmp_path, capsys):
    out = tmp_path / "gcp.json"
    code, _, err = refresh(fake.url, out, capsys, "--regions", "us-centrl1")
    assert code == 2 and "mlfleet: error:" in err and "us-centrl1" in err and "us-central1" in err
    assert not out.exists()


def test_gcp_needs_a_project(tmp_path, capsys):
    out = tmp_path / "gcp.json"
    code = main(["capacity", "refresh", "--cloud", "gcp", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "mlfleet: error:" in err and "--project" in err
    assert not out.exists()


@pytest.fixture
def existing(tmp_path):
    out = tmp_path / "gcp.json"
    out.write_text('{"kept": true}\n')
    return out


def test_unknown_project_exits_1_and_keeps_the_table(fake, existing, capsys):
    code = main(["capacity", "refresh", "--cloud", "gcp", "--project", "no-such-project",
                 "--endpoint", fake.url, "--out", str(existing)])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("mlfleet: error:") and "was not found" in err
    assert "Traceback" not in err
    assert existing.read_text() == '{"kept": true}\n'


def test_unreachable_endpoint_exits_1_and_keeps_the_table(existing, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    code, _, err = refresh(closed, existing, capsys)
    assert code == 1 and err.startswith("mlfleet: error:") and "could not reach" in err
    assert "Traceback" not in err
    assert existing.read_text() == '{"kept": true}\n'


def test_unreachable_zones_write_no_partial_table(fake, existing, capsys):
    from mlfleet.dr.sandbox.faults import Fault

    fake.faults.add(Fault(region="us-central1", service="compute"))
    code, _, err = refresh(fake.url, existing, capsys)
    assert code == 1 and err.startswith("mlfleet: error:")
    assert "us-central1-a, us-central1-b, us-central1-f" in err and "partial" in err
    assert existing.read_text() == '{"kept": true}\n'
    # A region the fault does not touch still refreshes.
    code, _, err = refresh(fake.url, existing, capsys, "--regions", "europe-west4")
    assert code == 0, err
    assert json.loads(existing.read_text())["zones"] == {"europe-west4-a": ["nvidia-h100-80gb", "nvidia-l4"]}


def test_shipped_table_says_when_and_where_from():
    shipped = GcpAcceleratorOfferings.load()
    assert shipped.generated_at and "mlfleet capacity refresh --cloud gcp" in shipped.source
    # Regions the example environments use.
    for region in ("us-central1", "us-east1", "us-east4", "us-west1", "europe-west4"):
        assert shipped.zones_offering("nvidia-l4", region), region
    assert shipped.max_per_instance("nvidia-l4") == 8
    assert all(t.startswith("nvidia-") and not t.endswith("-vws")
               for types in shipped.zones.values() for t in types)
    assert set(shipped.accelerator_types) == {t for types in shipped.zones.values() for t in types}
    # Written as a refresh writes it, so that a refresh diffs against it zone by zone.
    assert dumps_table(json.loads(GCP_TABLE.read_text())) == GCP_TABLE.read_text()
