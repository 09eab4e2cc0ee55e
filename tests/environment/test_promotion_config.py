"""The environment's promotion gates and model registry: thresholds written as `metric op number`,
lineage required by default, one MLflow per region. Each mistake exits 2 naming the field."""
from __future__ import annotations

import copy

import pytest
import yaml

from mlfleet.stacks.environment import ENVIRONMENTS_DIR, load_environment, parse_environment

from helpers.cli import synth_invalid


def _mutated(name: str, mutate) -> dict:
    data = copy.deepcopy(yaml.safe_load((ENVIRONMENTS_DIR / f"{name}.yaml").read_text()))
    mutate(data)
    return data


def _promotion(**fields):
    return lambda d: d.setdefault("promotion", {}).update(fields)


INVALID = {
    "no operator": ("dev", _promotion(thresholds=["accuracy 0.9"]),
                    "promotion.thresholds[0]: 'accuracy 0.9' is not '<metric> <op> <number>' with op one of "
                    ">=, >, <=, <, =="),
    "operator not supported": ("dev", _promotion(thresholds=["accuracy != 0.9"]),
                               "promotion.thresholds[0]: 'accuracy != 0.9' is not '<metric> <op> <number>'"),
    "not a number": ("dev", _promotion(thresholds=["accuracy >= high"]),
                     "promotion.thresholds[0]: 'accuracy >= high' is not"),
    "two bounds of one kind": ("dev", _promotion(thresholds=["accuracy >= 0.9", "accuracy>=0.8"]),
                               "promotion.thresholds: 'accuracy >=' is given twice: keep one bound"),
    "lineage not a boolean": ("dev", _promotion(require_lineage="sometimes"),
                              "promotion.require_lineage: Input should be a valid boolean"),
    "typo in the block": ("dev", _promotion(threshold=["accuracy >= 0.9"]), "promotion.threshold: unknown key"),
    "tracking uri not a URL": ("dev", lambda d: d["model_registry"].update(tracking_uri="mlflow.internal"),
                               "model_registry.tracking_uri: String should match pattern"),
    "one MLflow for two regions": (
        "staging", lambda d: d["model_registry"].update(tracking_uri="https://mlflow.staging.example.internal"),
        "model_registry.tracking_uri: https://mlflow.staging.example.internal names one MLflow for 2 regions: "
        "each region runs its own on its registry database (promotion uses the writer's), so write {region}"),
    "unknown placeholder": ("dev", lambda d: d["model_registry"].update(tracking_uri="https://mlflow.{zone}.x.io"),
                            "model_registry.tracking_uri: String should match pattern"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_promotion_settings_are_refused_with_path_and_reason(case, tmp_path, capsys):
    name, mutate, expected = INVALID[case]
    assert expected in synth_invalid(tmp_path, capsys, _mutated(name, mutate))


def test_thresholds_parse_and_compare():
    env = parse_environment(_mutated("dev", _promotion(
        thresholds=["accuracy >= 0.9", "latency_p99_ms<20", "loss <= 1e-3", "eval/auc > .5", "drift == 0"])), "dev")
    accuracy, latency, loss, auc, drift = env.promotion.thresholds
    assert (accuracy.metric, accuracy.operator, accuracy.value) == ("accuracy", ">=", 0.9)
    assert accuracy.holds(0.9) and not accuracy.holds(0.8999)
    assert latency.holds(19.9) and not latency.holds(20)
    assert loss.value == 0.001 and loss.holds(0.001) and not loss.holds(0.002)
    assert auc.metric == "eval/auc" and auc.holds(0.51) and not auc.holds(0.5)
    assert drift.holds(0) and not drift.holds(0.1)
    assert str(latency) == "latency_p99_ms < 20"


def test_defaults_require_lineage_and_no_thresholds():
    env = parse_environment(_mutated("dev", lambda d: (d.pop("promotion"), d.pop("model_registry"))), "dev")
    assert env.promotion.require_lineage is True and env.promotion.thresholds == []
    assert env.model_registry.tracking_uri is None and env.model_registry.tracking_uri_of("us-east-2") is None


def test_production_gates_are_stricter_than_development():
    def bound(name: str, metric: str) -> float:
        return next(t.value for t in load_environment(name).promotion.thresholds if t.metric == metric)

    assert bound("prod", "accuracy") > bound("staging", "accuracy") > bound("dev", "accuracy")
    assert bound("prod", "latency_p99_ms") <= bound("staging", "latency_p99_ms")
    assert all(load_environment(n).promotion.require_lineage for n in ("dev", "staging", "prod"))


def test_each_region_has_its_own_tracking_uri():
    prod = load_environment("prod")
    assert [prod.model_registry.tracking_uri_of(r.name) for r in prod.regions] == [
        "https://mlflow.us-east-1.example.internal", "https://mlflow.us-west-2.example.internal",
        "https://mlflow.us-east-2.example.internal"]
    one_region = parse_environment(_mutated("dev", lambda d: d["model_registry"].update(
        tracking_uri="http://mlflow.dev.example.internal:5000")), "dev")
    assert one_region.model_registry.tracking_uri_of("us-east-2") == "http://mlflow.dev.example.internal:5000"
