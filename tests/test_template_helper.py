"""The tests' `Template` helper and the reader of synthesized Terraform under it."""
from __future__ import annotations

import json

import pytest

from mlfleet.constructs import terraform_json

from helpers.template import ABSENT, Template

TF = {
    "provider": {"aws": [{"region": "us-east-1"}, {"alias": "replica", "region": "us-west-2"}]},
    "terraform": {"backend": {"s3": {"bucket": "state", "key": "prod/us-east-1.tfstate"}}},
    "data": {"terraform_remote_state": {"other": {"backend": "local"}}},
    "resource": {
        "aws_s3_bucket": {
            "artifacts": {"bucket": "models", "//": {"metadata": {"path": "prod/artifacts/bucket"}}},
            "logs": {"bucket": "logs", "force_destroy": True},
        },
        "aws_s3_bucket_replication_configuration": {
            "replication": {"bucket": "${aws_s3_bucket.artifacts.id}",
                            "rule": [{"id": "all", "status": "Enabled", "destination": {"bucket": "arn:b"}}]},
        },
    },
    "output": {"bucket_name": {"value": "models"}},
}


def test_blocks_reads_both_forms_of_a_nested_block():
    assert terraform_json.blocks(None) == []
    assert terraform_json.blocks({"a": 1}) == [{"a": 1}]
    assert terraform_json.blocks([{"a": 1}, {"a": 2}]) == [{"a": 1}, {"a": 2}]
    assert terraform_json.first_block(None) == {}
    assert terraform_json.first_block([{"a": 1}, {"a": 2}]) == {"a": 1}


def test_reader_finds_resources_outputs_providers_backend_and_references():
    assert sorted(terraform_json.resources(TF, "aws_s3_bucket")) == ["artifacts", "logs"]
    assert terraform_json.resources(TF, "aws_eks_cluster") == {}
    assert [name for name, _ in terraform_json.sorted_resources(TF, "aws_s3_bucket")] == ["artifacts", "logs"]
    assert terraform_json.resource_count(TF) == 3
    assert terraform_json.construct_paths(TF)["aws_s3_bucket.artifacts"] == "prod/artifacts/bucket"
    assert terraform_json.construct_paths(TF)["aws_s3_bucket.logs"] == "aws_s3_bucket.logs"
    assert terraform_json.output_value(TF, "bucket_name") == "models"
    assert terraform_json.output_value(TF, "missing", 0) == 0
    assert [p.get("alias") for p in terraform_json.providers(TF, "aws")] == [None, "replica"]
    assert terraform_json.providers({"provider": {"google": {"region": "us-east4"}}}, "google") == [
        {"region": "us-east4"}]
    assert terraform_json.provider_region(TF) == "us-east-1"
    assert terraform_json.backend(TF) == ("s3", {"bucket": "state", "key": "prod/us-east-1.tfstate"})
    assert terraform_json.backend({}) is None
    assert list(terraform_json.remote_states(TF)) == ["other"]
    replication = terraform_json.resources(TF, "aws_s3_bucket_replication_configuration")["replication"]
    assert terraform_json.references(replication, "aws_s3_bucket") == {"aws_s3_bucket.artifacts"}


def test_template_counts_and_finds_the_one_resource():
    template = Template.from_json(json.dumps(TF))
    template.resource_count_is("aws_s3_bucket", 2)
    assert template.only("aws_s3_bucket_replication_configuration")["rule"][0]["id"] == "all"
    with pytest.raises(AssertionError, match=r"expected one aws_s3_bucket, found \['artifacts', 'logs'\]"):
        template.only("aws_s3_bucket")
    with pytest.raises(AssertionError, match="expected 1 aws_s3_bucket, found 2"):
        template.resource_count_is("aws_s3_bucket", 1)
    assert template.output_value("bucket_name") == "models"
    assert list(template.remote_states()) == ["other"] and template.data_sources("aws_iam_policy_document") == {}
    assert template.backend() == ("s3", {"bucket": "state", "key": "prod/us-east-1.tfstate"})
    assert [p["region"] for p in template.providers("aws")] == ["us-east-1", "us-west-2"]
    with pytest.raises(AssertionError, match="no output 'nope'"):
        template.output_value("nope")


def test_has_resource_properties_matches_a_deep_subset():
    template = Template(TF)
    body = template.has_resource_properties("aws_s3_bucket_replication_configuration", {
        "rule": [{"status": "Enabled", "destination": {"bucket": "arn:b"}}]})
    assert body["bucket"] == "${aws_s3_bucket.artifacts.id}"
    assert template.has_resource_properties("aws_s3_bucket", {"bucket": "logs"})["force_destroy"] is True
    assert list(template.find_resources("aws_s3_bucket", {"force_destroy": ABSENT})) == ["artifacts"]


def test_has_resource_properties_says_why_nothing_matched():
    template = Template(TF)
    with pytest.raises(AssertionError) as failed:
        template.has_resource_properties("aws_s3_bucket_replication_configuration", {
            "rule": [{"destination": {"bucket": "arn:other"}}]})
    assert "at rule[0].destination.bucket: expected 'arn:other', found 'arn:b'" in str(failed.value)
    with pytest.raises(AssertionError) as failed:
        template.has_resource_properties("aws_s3_bucket", {"force_destroy": ABSENT, "bucket": "logs"})
    message = str(failed.value)
    assert "aws_s3_bucket.artifacts: at bucket: expected 'logs', found 'models'" in message
    assert "aws_s3_bucket.logs: at force_destroy: expected no value, found True" in message
    with pytest.raises(AssertionError, match="at rule: expected a list of 2"):
        template.has_resource_properties("aws_s3_bucket_replication_configuration", {"rule": [{}, {}]})
    with pytest.raises(AssertionError, match="missing"):
        template.has_resource_properties("aws_s3_bucket", {"versioning": {"enabled": True}})
    with pytest.raises(AssertionError, match="no aws_eks_cluster in the template"):
        template.has_resource_properties("aws_eks_cluster", {})
