"""The rule pack on what the internet can reach, on either cloud (MLF002): address ranges admitted
by security groups, firewalls, control planes and database networks, and load balancers.

A set of ranges exposes a resource when its union covers the whole IPv4 or IPv6 space (`0.0.0.0/0`,
but also `0.0.0.0/1` + `128.0.0.0/1`), or when the public addresses it admits add up to more than a
/8 (IPv4) or a /16 (IPv6): broader than any one organisation holds, so "the internet" in effect.
Ranges only known at apply (`${…}`) are judged where they are defined.
"""
from __future__ import annotations

import ipaddress
from collections import defaultdict
from ipaddress import IPv4Network, IPv6Network
from typing import Any, Iterable

from mlfleet.constructs.policy.findings import Check, Hits
from mlfleet.constructs.terraform_json import addressed, blocks, first_block, references

IpNetwork = IPv4Network | IPv6Network

# The most public addresses one set of ranges may admit: a /8 of IPv4, a /16 of IPv6.
_BROADEST_PREFIX = {4: 8, 6: 16}
_WHOLE_SPACE = {4: ipaddress.ip_network("0.0.0.0/0"), 6: ipaddress.ip_network("::/0")}
_AWS_LB = "service.beta.kubernetes.io/aws-load-balancer-"


def _networks(ranges: Iterable[Any]) -> list[IpNetwork]:
    found = []
    for value in ranges:
        if not isinstance(value, str) or "${" in value:
            continue
        try:
            found.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            continue  # not an address range (a tag, a prefix list): judged by other rules
    return found


def internet_exposure(ranges: Iterable[Any]) -> str | None:
    """Why `ranges` together admit the internet, or None when they do not (see the module docstring)."""
    networks = _networks(ranges)
    v4: list[IpNetwork] = list(ipaddress.collapse_addresses(n for n in networks if isinstance(n, IPv4Network)))
    v6: list[IpNetwork] = list(ipaddress.collapse_addresses(n for n in networks if isinstance(n, IPv6Network)))
    for version, collapsed in ((4, v4), (6, v6)):
        if _WHOLE_SPACE[version] in collapsed:
            return f"together cover the whole IPv{version} space ({_WHOLE_SPACE[version]})"
        public = [n for n in collapsed if not n.is_private]
        prefix = _BROADEST_PREFIX[version]
        limit = 2 ** ((32 if version == 4 else 128) - prefix)
        if sum(n.num_addresses for n in public) > limit:
            names = ", ".join(str(n) for n in public[:4]) + (", …" if len(public) > 4 else "")
            return f"admit more public IPv{version} addresses than a /{prefix} ({names}): too broad"
    return None


def _listed(value: Any) -> list:
    return value if isinstance(value, list) else [] if value is None else [value]


def _security_groups(tf: dict) -> Hits:
    """Ingress of one security group, from its inline rules and the rule resources naming it, taken
    together: two rules of halves of the internet are one rule of the internet."""
    ranges: dict[str, list[tuple[str, list]]] = defaultdict(list)
    for group, body in addressed(tf, "aws_security_group"):
        for rule in blocks(body.get("ingress")):
            ranges[group].append((group, _listed(rule.get("cidr_blocks")) + _listed(rule.get("ipv6_cidr_blocks"))))
    for rule_address, body in addressed(tf, "aws_security_group_rule"):
        if body.get("type") == "ingress":
            ranges[_group_of(body)].append(
                (rule_address, _listed(body.get("cidr_blocks")) + _listed(body.get("ipv6_cidr_blocks"))))
    for rule_address, body in addressed(tf, "aws_vpc_security_group_ingress_rule"):
        ranges[_group_of(body)].append((rule_address, [body.get("cidr_ipv4"), body.get("cidr_ipv6")]))
    for group, rules in ranges.items():
        why = internet_exposure(r for _, cidrs in rules for r in cidrs)
        if why:
            for rule_address in sorted({a for a, cidrs in rules if _networks(cidrs)}):
                yield "MLF002", rule_address, f"ingress to {group}: its CIDRs {why}"


def _group_of(body: dict) -> str:
    """The security group a rule resource belongs to: its address when referenced, else the id written."""
    groups = references(body.get("security_group_id"), "aws_security_group")
    return min(groups) if groups else str(body.get("security_group_id"))


def _firewalls(tf: dict) -> Hits:
    """Google Cloud ingress allow rules, taken together per network. A rule with no source at all
    admits 0.0.0.0/0 (Google's default)."""
    ranges: dict[str, list[tuple[str, list]]] = defaultdict(list)
    for firewall, body in addressed(tf, "google_compute_firewall"):
        if body.get("direction", "INGRESS") != "INGRESS" or body.get("disabled") is True or not blocks(
                body.get("allow")):
            continue
        sources = _listed(body.get("source_ranges"))
        if not sources and not body.get("source_tags") and not body.get("source_service_accounts"):
            sources = ["0.0.0.0/0"]
        ranges[str(body.get("network"))].append((firewall, sources))
    for network, rules in ranges.items():
        why = internet_exposure(r for _, sources in rules for r in sources)
        if why:
            for firewall in sorted({f for f, sources in rules if _networks(sources)}):
                yield "MLF002", firewall, f"ingress to network {network}: source ranges {why}"


def _control_planes(tf: dict) -> Hits:
    for cluster, body in addressed(tf, "aws_eks_cluster"):
        vpc = first_block(body.get("vpc_config"))
        if vpc.get("endpoint_public_access", True) is not False:
            # public_access_cidrs defaults to 0.0.0.0/0.
            why = internet_exposure(_listed(vpc.get("public_access_cidrs")) or ["0.0.0.0/0"])
            yield "MLF002", cluster, "the Kubernetes API endpoint is public" + (f": public_access_cidrs {why}"
                                                                                 if why else "")
    for cluster, body in addressed(tf, "google_container_cluster"):
        private = first_block(body.get("private_cluster_config"))
        networks = body.get("master_authorized_networks_config")
        authorized = first_block(networks)
        if authorized.get("gcp_public_cidrs_access_enabled") is True:
            yield "MLF002", cluster, "gcp_public_cidrs_access_enabled admits every Google Cloud public address"
        if private.get("enable_private_endpoint") is True:
            continue
        if not blocks(networks):
            yield "MLF002", cluster, "the control plane endpoint is public and no authorized networks narrow it"
            continue
        why = internet_exposure(b.get("cidr_block") for b in blocks(authorized.get("cidr_blocks")))
        if why:
            yield "MLF002", cluster, f"the control plane endpoint is public and its authorized networks {why}"


def _databases(tf: dict) -> Hits:
    for instance, body in addressed(tf, "google_sql_database_instance"):
        ip = first_block(first_block(body.get("settings")).get("ip_configuration"))
        why = internet_exposure(n.get("value") for n in blocks(ip.get("authorized_networks")))
        if why:
            yield "MLF002", instance, f"authorized networks {why}"


def _load_balancers(tf: dict) -> Hits:
    """Internet-facing load balancers: an `aws_lb` that is not internal, and a LoadBalancer Service
    that is internet-facing with source ranges (all, by default) that admit the internet."""
    for balancer, body in addressed(tf, "aws_lb"):
        if body.get("internal") is not True:
            yield "MLF002", balancer, "the load balancer is internet-facing (internal is not true)"
    for rtype in ("kubernetes_service_v1", "kubernetes_service"):
        for service, body in addressed(tf, rtype):
            spec = first_block(body.get("spec"))
            annotations = first_block(body.get("metadata")).get("annotations") or {}
            if spec.get("type") != "LoadBalancer" or not _internet_facing(spec, annotations):
                continue
            why = internet_exposure(_listed(spec.get("load_balancer_source_ranges")) or ["0.0.0.0/0"])
            if why:
                yield "MLF002", service, f"the Service's load balancer is internet-facing and its source ranges {why}"


def _internet_facing(spec: dict, annotations: dict) -> bool:
    """Whether a LoadBalancer Service gets a public load balancer: its annotations say so, else the
    default of what makes it (the AWS Load Balancer Controller's is internal, a cloud's own is public)."""
    scheme = annotations.get(_AWS_LB + "scheme")
    if scheme in ("internet-facing", "internal"):
        return bool(scheme == "internet-facing")
    gke_type = annotations.get("networking.gke.io/load-balancer-type") or annotations.get(
        "cloud.google.com/load-balancer-type")
    if str(annotations.get(_AWS_LB + "internal")).lower() == "true" or gke_type == "Internal":
        return False
    return spec.get("load_balancer_class") != "service.k8s.aws/nlb"


def _external_gateways(tf: dict) -> Hits:
    """A GKE Gateway of an external class: Google's load balancer on a public address."""
    for manifest, body in addressed(tf, "kubernetes_manifest"):
        m = body.get("manifest") or {}
        if m.get("kind") == "Gateway" and "-external-" in str(m.get("spec", {}).get("gatewayClassName", "")):
            yield "MLF002", manifest, f"Gateway class {m['spec']['gatewayClassName']} is internet-facing"


def _flow_logs(tf: dict) -> Hits:
    """A VPC whose traffic no flow log records: nothing to investigate an exposure with."""
    logged = {v for _, body in addressed(tf, "aws_flow_log") for v in references(body.get("vpc_id"), "aws_vpc")}
    for vpc, _ in addressed(tf, "aws_vpc"):
        if vpc not in logged:
            yield "MLF044", vpc, "no aws_flow_log records this VPC's traffic"


def _endpoint_policies(tf: dict) -> Hits:
    """A VPC endpoint without a policy allows every action on every resource of its service, any
    account's included: a path out of the VPC for data."""
    attached = {e for _, body in addressed(tf, "aws_vpc_endpoint_policy")
                for e in references(body.get("vpc_endpoint_id"), "aws_vpc_endpoint")}
    for endpoint, body in addressed(tf, "aws_vpc_endpoint"):
        # A Gateway Load Balancer endpoint takes no policy.
        if body.get("vpc_endpoint_type") == "GatewayLoadBalancer":
            continue
        if not body.get("policy") and endpoint not in attached:
            yield "MLF045", endpoint, f"no policy: {body.get('service_name')} is open to any principal and resource"


CHECKS: tuple[Check, ...] = (_security_groups, _firewalls, _control_planes, _databases, _load_balancers,
                             _external_gateways, _flow_logs, _endpoint_policies)
