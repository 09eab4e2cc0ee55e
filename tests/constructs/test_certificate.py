"""The DNS-validated ACM certificate of a regional serving endpoint."""
from __future__ import annotations

import pytest

from mlfleet.constructs.aws.certificate import DnsValidatedCertificate, DnsValidatedCertificateProps
from mlfleet.constructs.validation import PropsError

from helpers.template import Template

ZONE = "Z0123456789ABCDEFGHIJ"


def props(**overrides) -> DnsValidatedCertificateProps:
    base = dict(domain_name="us-east-1.serving.example.com", hosted_zone_id=ZONE)
    return DnsValidatedCertificateProps(**{**base, **overrides})


def test_certificate_is_dns_validated_through_one_record_per_validation_option(synth):
    from cdktn import TerraformOutput

    def build(stack):
        cert = DnsValidatedCertificate(stack, "cert", props(
            subject_alternative_names=("serving.example.com", "*.serving.example.com")))
        TerraformOutput(stack, "arn", value=cert.certificate_arn)

    template = Template(synth(build))
    cert_id = next(iter(template.resources("aws_acm_certificate")))
    cert = template.only("aws_acm_certificate")
    assert cert["domain_name"] == "us-east-1.serving.example.com" and cert["validation_method"] == "DNS"
    assert cert["subject_alternative_names"] == ["*.serving.example.com", "serving.example.com"]
    assert cert["options"] == {"certificate_transparency_logging_preference": "ENABLED"}
    assert cert["lifecycle"] == {"create_before_destroy": True}

    # The options are a set: one record per element through for_each, never an index into it.
    record_id, record = next(iter(template.resources("aws_route53_record").items()))
    assert "${" in record["for_each"] and f"aws_acm_certificate.{cert_id}.domain_validation_options" in \
        record["for_each"] and "domain_name" in record["for_each"]
    assert record["zone_id"] == ZONE and record["ttl"] == 60 and record["allow_overwrite"] is True
    assert record["name"] == "${each.value.resource_record_name}"
    assert record["type"] == "${each.value.resource_record_type}"
    assert record["records"] == ["${each.value.resource_record_value}"]

    validation_id, validation = next(iter(template.resources("aws_acm_certificate_validation").items()))
    assert validation["certificate_arn"] == f"${{aws_acm_certificate.{cert_id}.arn}}"
    assert f"aws_route53_record.{record_id}" in validation["validation_record_fqdns"]
    assert ".fqdn" in validation["validation_record_fqdns"]
    # Users wait for the validation, not just for the certificate's creation.
    assert template.output_value("arn") == f"${{aws_acm_certificate_validation.{validation_id}.certificate_arn}}"


@pytest.mark.parametrize("overrides, match", [
    (dict(domain_name="Serving.Example.com"), r"domain_name: 'Serving.Example.com' is not a fully qualified"),
    (dict(domain_name="serving.example.com."), r"domain_name: 'serving.example.com.' is not a fully qualified"),
    (dict(domain_name="a.*.example.com"), r"domain_name: 'a.\*.example.com'"),
    (dict(domain_name=("a" * 60) + ".example.com"), r"domain_name: .* longer than the 64 characters"),
    (dict(hosted_zone_id="zone-1"), r"hosted_zone_id: 'zone-1' is not a Route 53 hosted zone id"),
    (dict(subject_alternative_names=("us-east-1.serving.example.com",)), r"subject_alternative_names: lists a name"),
    (dict(subject_alternative_names=("ok.example.com", "bad_name.example.com")),
     r"subject_alternative_names\[1\]: 'bad_name.example.com'"),
    (dict(key_algorithm="RSA_1024"), r"key_algorithm: 'RSA_1024'"),
])
def test_invalid_props_are_rejected_with_the_prop_named(synth, overrides, match):
    with pytest.raises(PropsError, match=match):
        synth(lambda stack: DnsValidatedCertificate(stack, "cert", props(**overrides)))
