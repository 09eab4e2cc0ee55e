"""Golden reviews of the example environments (AWS, cross-cloud and all Google Cloud): the
Markdown a reviewer reads and the picture.

Regenerate after an intended change with `MLFLEET_UPDATE_GOLDEN=1 python -m pytest tests/review`
and read the diff of tests/review/golden/ before committing it."""
from __future__ import annotations

import json
import os
from pathlib import Path
from xml.etree import ElementTree

import pytest

from mlfleet.stacks.review.diagram import render_svg
from mlfleet.stacks.review.report import build_review, render_markdown, to_json

from helpers.examples import EXAMPLES

GOLDEN = Path(__file__).parent / "golden"


def _check_golden(path: Path, text: str) -> None:
    if os.environ.get("MLFLEET_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.is_file(), f"{path.name} is missing: run with MLFLEET_UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(), (
        f"the review differs from {path.name}; if the change is intended, regenerate with "
        "MLFLEET_UPDATE_GOLDEN=1 python -m pytest tests/review and review the diff")


@pytest.mark.parametrize("name", EXAMPLES)
def test_golden_review(examples, name):
    env, stacks, findings = examples[name]
    review = build_review(env, synthesized=(stacks, findings), run_checkov=False)
    markdown = render_markdown(review, f"{name}.svg")
    svg = render_svg(env, stacks)
    _check_golden(GOLDEN / f"{name}.md", markdown)
    _check_golden(GOLDEN / f"{name}.svg", svg)
    ElementTree.fromstring(svg)  # well-formed XML
    assert str(Path.cwd()) not in markdown and "/tmp" not in markdown


@pytest.mark.parametrize("name", EXAMPLES)
def test_json_review_carries_the_same_facts(examples, name):
    env, stacks, findings = examples[name]
    review = build_review(env, synthesized=(stacks, findings), run_checkov=False)
    data = json.loads(json.dumps(to_json(review)))
    assert data["environment"] == name
    assert data["cost_estimate"]["estimate"] is True
    assert [(t["cloud"], t["date"]) for t in data["cost_estimate"]["price_tables"]] == [
        (t.cloud, t.generated_at) for t in review.cost.tables]
    # Every cloud's table, and AWS's for the Route 53 routing controls even where no region is on AWS.
    assert {t["cloud"] for t in data["cost_estimate"]["price_tables"]} == set(env.clouds) | (
        {"aws"} if len(env.regions) > 1 else set())
    assert data["blocking"] == len(review.blocking)
    assert {p["region"] for p in data["gpu_capacity"]} == {r.name for r in env.regions}
    assert {(p["region"], p["cloud"]) for p in data["gpu_capacity"]} == {(r.name, r.cloud) for r in env.regions}
    assert "?" not in {p["gpu"] for p in data["gpu_capacity"]}
    assert sum(sum(c.values()) for c in data["resources"].values()) == sum(
        len(items) for tf in stacks.values() for items in tf["resource"].values())


def test_prod_review_shows_capacity_cost_and_budget(examples):
    env, stacks, findings = examples["prod"]
    review = build_review(env, synthesized=(stacks, findings), run_checkov=False)
    markdown = render_markdown(review)
    assert review.exit_code == 0
    assert "RTO verdict: **pass**" in markdown and "RPO verdict: **pass**" in markdown
    assert "**Estimate** from the price table of" in markdown
    standby = [p for p in review.capacity if p.region == "us-west-2" and p.pool == "inference-gpu"][0]
    assert (standby.gpus_warm, standby.gpus_min, standby.gpus_max) == (2, 4, 16)
