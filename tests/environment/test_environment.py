"""The environment model: the shipped examples load, and every kind of bad input stops with
exit code 2, the field's path and the reason, before anything is written."""
from __future__ import annotations

import copy
import json

import pytest
import yaml

from mlfleet.stacks.cli import main
from mlfleet.stacks.environment import (
    ENVIRONMENTS_DIR,
    ConfigError,
    environment_names,
    json_schema,
    load_environment,
    parse_environment,
)

from helpers.cli import synth_invalid


def test_examples_load_with_expected_topology():
    assert environment_names() == ["dev", "hybrid", "prod", "research", "staging"]
    dev, staging, prod = (load_environment(n) for n in ("dev", "staging", "prod"))
    assert [r.name for r in dev.regions] == ["us-east-2"] and not dev.standbys
    assert staging.primary.name == "us-east-1" and [r.name for r in staging.standbys] == ["us-west-2"]
    assert prod.primary.name == "us-east-1" and len(prod.standbys) == 2
    assert prod.targets.rto == 15 * 60 and prod.targets.rpo == 15 * 60
    assert prod.endpoint(prod.primary) == "us-east-1.models.example.com"


def _prod() -> dict:
    return yaml.safe_load((ENVIRONMENTS_DIR / "prod.yaml").read_text())


def _mutate(fn):
    data = _prod()
    fn(data)
    return data


INVALID = {
    "unknown key": (lambda d: d["gpu_pools"][0].update(min_szie=3),
                    "gpu_pools[0].min_szie: unknown key (a typo?)"),
    "duplicate region": (lambda d: d["regions"][2].update(name="us-west-2"),
                         "regions[2].name: region us-west-2 is listed twice"),
    "two primaries": (lambda d: d["regions"][1].update(role="primary"),
                      "regions: exactly one region must have role primary, found 2"),
    "no primary": (lambda d: [r.update(role="standby") for r in d["regions"]],
                   "exactly one region must have role primary, found 0"),
    "size ordering": (lambda d: d["gpu_pools"][0].update(warm_standby=6),
                      "gpu_pools[0]: sizes must satisfy warm_standby <= min_size <= max_size"),
    "min above max": (lambda d: d["gpu_pools"][0].update(max_size=3),
                      "gpu_pools[0]: sizes must satisfy"),
    "type not offered in region": (
        lambda d: d["gpu_pools"][0].update(instance_types=["p5e.48xlarge"]),
        "gpu_pools[0].instance_types[0]: p5e.48xlarge is not offered in us-east-1"),
    "not a GPU type": (lambda d: d["gpu_pools"][0].update(instance_types=["m7i.large"]),
                       "gpu_pools[0].instance_types[0]: m7i.large is not an NVIDIA GPU instance type"),
    "overlapping cidrs": (lambda d: d["regions"][2]["network"].update(cidr="10.40.0.0/16"),
                          "regions[2].network.cidr: 10.40.0.0/16 overlaps 10.40.0.0/16 (cidr) of regions.0"),
    "rpo tighter than rtc": (lambda d: d["targets"].update(rpo="5m"),
                             "targets.rpo: RPO target 300s is tighter than S3 Replication Time Control"),
    "bad duration": (lambda d: d["targets"].update(rto="soon"),
                     "targets.rto: 'soon' is not a duration"),
    "public cidr": (lambda d: d["regions"][0]["network"].update(cidr="8.8.0.0/16"),
                    "regions[0].network.cidr: 8.8.0.0/16 is not a private range"),
    "missing tags": (lambda d: d["tags"].pop("owner"), "tags: required tags missing: owner"),
    "reservation for unknown region": (
        lambda d: d["gpu_pools"][0]["reservations"].update(
            {"eu-west-1": {"capacity_reservation_id": "cr-0123456789abcdef0"}}),
        "gpu_pools[0].reservations.eu-west-1: eu-west-1 is not one of this environment's regions"),
    "efa with reservations": (lambda d: d["gpu_pools"][0].update(efa_interfaces=2),
                              "gpu_pools[0].efa_interfaces: EFA puts nodes in a cluster placement group"),
    "reserved pool name": (lambda d: d["gpu_pools"][1].update(name="system"),
                           "gpu_pools[1].name: 'system' is reserved for the cluster's system node pool"),
    "missing field": (lambda d: d.pop("serving"), "serving: Field required"),
    "reservation with both targets": (
        lambda d: d["gpu_pools"][0]["reservations"]["us-east-1"].update(
            resource_group_arn="arn:aws:resource-groups:us-east-1:333333333333:group/gpu"),
        "gpu_pools[0].reservations.us-east-1: give one of capacity_reservation_id, resource_group_arn (AWS) "
        "or name (Google Cloud)"),
    "flow logs off without a reason": (
        lambda d: d["regions"][1]["network"].update(flow_logs={"enabled": False}),
        "regions[1].network.flow_logs: flow logs are off: give the reason"),
    "flow logs reason while on": (
        lambda d: d["regions"][1]["network"].update(flow_logs={"reason": "we keep our own flow logs"}),
        "regions[1].network.flow_logs: reason explains flow logs turned off"),
    "flow logs retention CloudWatch lacks": (
        lambda d: d["regions"][0]["network"].update(flow_logs={"retention_days": 100}),
        "regions[0].network.flow_logs.retention_days: 100 is not a CloudWatch Logs retention"),
    "flow logs traffic type": (
        lambda d: d["regions"][0]["network"].update(flow_logs={"traffic_type": "SOME"}),
        "regions[0].network.flow_logs.traffic_type: Input should be 'ALL', 'ACCEPT' or 'REJECT'"),
    "flow logs of an existing network": (
        lambda d: d["regions"][1].update(network={
            "existing": {"vpc_id": "vpc-0123456789abcdef0", "cidr": "10.41.0.0/16",
                         "private_subnet_ids": ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2",
                                                "subnet-0aaaaaaaaaaaaaaa3"]},
            "flow_logs": {"traffic_type": "REJECT"}}),
        "regions[1].network: flow_logs applies to a VPC mlfleet creates"),
    "unknown cloud": (lambda d: d["regions"][1].update(cloud="azure"),
                      "regions[1]: cloud must be aws (the default) or gcp"),
    "cloud that is not a name": (lambda d: d["regions"][1].update(cloud=["gcp"]),
                                 "regions[1]: cloud must be aws (the default) or gcp"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_environment_is_refused_with_path_and_reason(case, tmp_path, capsys):
    mutate, expected = INVALID[case]
    err = synth_invalid(tmp_path, capsys, _mutate(mutate))
    assert expected in err


def test_flow_logs_are_on_by_default_and_off_only_with_a_reason():
    prod = load_environment("prod")
    assert all(r.network.flow_logs.enabled and r.network.flow_logs.traffic_type == "ALL"
               and r.network.flow_logs.retention_days == 365 for r in prod.regions)
    data = _mutate(lambda d: d["regions"][1]["network"].update(
        flow_logs={"enabled": False, "reason": "the network team records this VPC at the transit gateway"}))
    off = parse_environment(data, "test").regions[1].network.flow_logs
    assert not off.enabled and off.reason.startswith("the network team")


def test_rpo_exception_is_accepted_when_acknowledged_with_a_reason():
    data = _prod()
    data["targets"]["rpo"] = "5m"
    data["acknowledgements"] = [
        {"rule": "MLF010", "reason": "models change weekly; the registry DB (RPO ~1 s) is what matters"}]
    assert parse_environment(data, "test").targets.rpo == 300


def test_every_problem_is_reported_not_just_the_first():
    data = _prod()
    data["gpu_pools"][0]["min_szie"] = 1
    data["serving"]["record_ttl"] = 0
    with pytest.raises(ConfigError) as info:
        parse_environment(data, "x.yaml")
    paths = [p for p, _ in info.value.problems]
    assert "gpu_pools[0].min_szie" in paths and "serving.record_ttl" in paths


def test_yaml_syntax_error_names_the_line(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("name: prod\nregions: [\n")
    assert main(["synth", "--config", str(path), "--outdir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "not valid YAML" in err and "line" in err


def test_unknown_environment_lists_known_ones(capsys):
    assert main(["synth", "--env", "qa"]) == 2
    assert "no environment 'qa'; known: dev, hybrid, prod, research, staging" in capsys.readouterr().err


def test_missing_file_is_a_clear_error(tmp_path, capsys):
    assert main(["synth", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "No such file" in capsys.readouterr().err


def test_schema_matches_the_model_and_documents_fields(capsys):
    assert main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json_schema()
    assert set(printed["required"]) >= {"name", "aws", "regions", "gpu_pools", "serving", "targets"}
    assert printed["$defs"]["GpuPool"]["additionalProperties"] is False


@pytest.mark.parametrize("name", environment_names())
def test_every_example_passes_the_shipped_schema(name):
    """What an editor checks the files with agrees with the model: durations like '15m' included."""
    import jsonschema

    schema = json.loads((ENVIRONMENTS_DIR.parent / "environment.schema.json").read_text())
    data = yaml.safe_load((ENVIRONMENTS_DIR / f"{name}.yaml").read_text())
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
              for e in jsonschema.Draft202012Validator(schema).iter_errors(data)]
    assert errors == []
    bad = copy.deepcopy(data)
    bad["targets"]["rto"] = "soon"
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(bad))


@pytest.mark.parametrize("name", environment_names())
def test_every_example_points_editors_at_the_shipped_schema(name):
    path = ENVIRONMENTS_DIR / f"{name}.yaml"
    first = path.read_text().splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema=")
    schema = (path.parent / first.removeprefix("# yaml-language-server: $schema=")).resolve()
    assert schema == (ENVIRONMENTS_DIR.parent / "environment.schema.json").resolve() and schema.is_file()


def test_shipped_schema_file_is_current():
    """Editors validate environment files against stacks/environment/environment.schema.json; regenerate
    it with `mlfleet schema > stacks/environment/environment.schema.json` when the model changes."""
    shipped = json.loads((ENVIRONMENTS_DIR.parent / "environment.schema.json").read_text())
    assert shipped == json_schema()
