"""The drill report's verdict on the registry: both RPOs within the target, a planned switchover
that lost a write fails, and an RPO nobody could read is no pass."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from mlfleet.dr.report import drill_report
from mlfleet.stacks.environment import load_environment

ENV = load_environment("staging")  # RPO target 900 s


def _outcome(registry: dict | None, kept: dict | None = None) -> dict:
    marks = {"fault_injected": 100.0, "declared": 100.5, "first_inference": 102.0, "slo_recovered": 102.5}
    ctx = SimpleNamespace(timeline=SimpleNamespace(marks=marks), clock=SimpleNamespace(waiting_s=2.0))
    return {"result": None, "ctx": ctx, "rpo_s": 0.4, "notes": [], "new_region": "us-west-2",
            "writes_before_fault": 20, "writes_missing": 1, "registry": registry, "failback_registry": kept}


def _registry(**values) -> dict:
    return {"writer": "us-west-2", "model": "drill", "lag_at_gate_s": 0.5, "written": 30, "present": 30,
            "missing": 0, "rpo_s": 0.0, **values}


@pytest.mark.parametrize("registry, kept, verdict", [
    (_registry(), {"writer": "us-east-1", "written": 20, "present": 20, "missing": 0}, "pass"),
    (_registry(rpo_s=901.0, present=29, missing=1), None, "fail"),  # beyond the RPO target
    (_registry(), {"writer": "us-east-1", "written": 20, "present": 19, "missing": 1}, "fail"),
    (_registry(error="the new writer's MLflow did not answer: timeout", written=None, present=None, missing=None,
               rpo_s=None), None, "fail"),
    (None, None, "pass"),  # no MLflow for the writer: said in a note, judged on the artifact RPO
])
def test_the_verdict_holds_the_registry_to_the_target(registry, kept, verdict):
    report = drill_report(SimpleNamespace(env=ENV), "us-east-1", _outcome(registry, kept))
    assert report["verdict"] == verdict, report["notes"]
    if registry is None:
        assert any(note.startswith("registry RPO not measured") for note in report["notes"])
    elif registry.get("error"):
        assert report["measured"]["registry_rpo_s"] is None
        assert "registry RPO not measured: the new writer's MLflow did not answer" in report["notes"][0]
    else:
        assert report["measured"]["registry_rpo_s"] == registry["rpo_s"]
