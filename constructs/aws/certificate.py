"""An ACM certificate validated through DNS records in a Route 53 hosted zone.

ACM returns one validation record per distinct name as a set (`domain_validation_options`),
known only at apply and not indexable: the records are one `aws_route53_record` per element,
through a `TerraformIterator` keyed by the domain name. `certificate_arn` is the validation
resource's, so a listener that uses it waits until the certificate is issued.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from cdktn import TerraformIterator, Token
from cdktn_provider_aws.acm_certificate import AcmCertificate, AcmCertificateOptions
from cdktn_provider_aws.acm_certificate_validation import AcmCertificateValidation
from cdktn_provider_aws.route53_record import Route53Record
from constructs import Construct

from mlfleet.constructs.validation import DNS_NAME, HOSTED_ZONE_ID, WILDCARD_DNS_NAME, require

VALIDATION_RECORD_TTL = 60
MAX_NAMES = 100  # ACM's default quota of names per certificate (domain name included)


@dataclass(frozen=True, kw_only=True)
class DnsValidatedCertificateProps:
    domain_name: str
    """The certificate's name, e.g. `us-east-1.serving.example.com` (or `*.serving.example.com`)."""
    hosted_zone_id: str
    """The public Route 53 zone the validation records are written to; it covers every name."""
    subject_alternative_names: tuple[str, ...] = ()
    """More names on the same certificate; default none."""
    key_algorithm: str = "RSA_2048"
    """ACM's key algorithm; default `RSA_2048`, which every client and health checker accepts."""
    tags: dict[str, str] = field(default_factory=dict)
    """AWS tags on the certificate; default none."""


class DnsValidatedCertificate(Construct):
    """A DNS-validated ACM certificate whose ARN is usable once it is issued."""

    def __init__(self, scope: Construct, id_: str, props: DnsValidatedCertificateProps):
        super().__init__(scope, id_)
        _validate(self, props)
        self.certificate = AcmCertificate(
            self, "certificate", domain_name=props.domain_name,
            subject_alternative_names=sorted(props.subject_alternative_names) or None,
            validation_method="DNS", key_algorithm=props.key_algorithm,
            # Certificate Transparency logging stays on: browsers and clients reject unlogged certificates.
            options=AcmCertificateOptions(certificate_transparency_logging_preference="ENABLED"),
            tags=dict(props.tags) or None,
            # A replaced certificate is created (and validated) before the old one is released.
            lifecycle={"create_before_destroy": True})
        # A name and its wildcard share one validation record; keyed by domain name, each element
        # is its own record, and `allow_overwrite` lets the shared one be written twice.
        options = TerraformIterator.from_complex_list(self.certificate.domain_validation_options, "domain_name")
        self.validation_records = Route53Record(
            self, "validation-record", for_each=options, zone_id=props.hosted_zone_id,
            name=options.get_string("resource_record_name"), type=options.get_string("resource_record_type"),
            records=[options.get_string("resource_record_value")], ttl=VALIDATION_RECORD_TTL, allow_overwrite=True)
        records = TerraformIterator.from_resources(self.validation_records)
        self.validation = AcmCertificateValidation(
            self, "validation", certificate_arn=self.certificate.arn,
            validation_record_fqdns=Token.as_list(records.pluck_property("fqdn")))

        self.certificate_arn: str = self.validation.certificate_arn
        """The certificate's ARN through its validation: whatever uses it waits for the certificate to be issued."""
        self.domain_name = props.domain_name


def _validate(scope: Construct, props: DnsValidatedCertificateProps) -> None:
    require(bool(HOSTED_ZONE_ID.fullmatch(props.hosted_zone_id)), scope, "hosted_zone_id",
            f"{props.hosted_zone_id!r} is not a Route 53 hosted zone id (Z…)")
    names = (props.domain_name, *props.subject_alternative_names)
    for i, name in enumerate(names):
        prop = "domain_name" if i == 0 else f"subject_alternative_names[{i - 1}]"
        require(bool(DNS_NAME.fullmatch(name) or WILDCARD_DNS_NAME.fullmatch(name)), scope, prop,
                f"{name!r} is not a fully qualified DNS name (lowercase, no trailing dot; a wildcard only as "
                "the leftmost label, e.g. '*.serving.example.com')")
        # ACM limits the first name (the certificate's CN) to 64 characters.
        if i == 0:
            require(len(name) <= 64, scope, prop, f"{name!r} is longer than the 64 characters ACM allows")
    require(len(set(names)) == len(names), scope, "subject_alternative_names",
            "lists a name twice (or the domain name)")
    require(len(names) <= MAX_NAMES, scope, "subject_alternative_names",
            f"{len(names)} names: ACM allows {MAX_NAMES} per certificate")
    require(props.key_algorithm in ("RSA_2048", "EC_prime256v1", "EC_secp384r1"), scope, "key_algorithm",
            f"{props.key_algorithm!r} is not one ELB listeners accept (RSA_2048, EC_prime256v1, EC_secp384r1)")
