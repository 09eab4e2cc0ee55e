"""The review's view of the serving plane: read from each region's serving stack, priced, drawn,
and checked by the rule pack."""
from __future__ import annotations

import copy

from mlfleet.constructs.terraform_json import provider_region
from mlfleet.stacks.review.cost import NOMINAL_IMAGE_GB, NOMINAL_NLCU, estimate
from mlfleet.stacks.review.diagram import render_svg
from mlfleet.stacks.review.prices import Prices, PriceTable
from mlfleet.stacks.review.report import build_review, render_markdown
from mlfleet.stacks.review.serving import serving_endpoints

from helpers.examples import EXAMPLES


def test_prod_endpoints_are_nlbs_with_warm_standby_pods(examples):
    env, stacks, _ = examples["prod"]
    endpoints = serving_endpoints(env, stacks)
    assert [(e.region, e.role) for e in endpoints] == [(r.name, r.role) for r in (env.primary, *env.standbys)]
    replicas = env.serving.replicas
    for e in endpoints:
        assert e.hostname == f"{e.region}.{env.serving.dns_name}"
        assert (e.load_balancer, e.scheme) == ("NLB", "internet-facing")
        assert e.tls_policy == "ELBSecurityPolicy-TLS13-1-2-2021-06"
        assert e.digest == env.serving.image.digest[:len("sha256:") + 12]
        assert e.registry.endswith(f".dkr.ecr.{e.region}.amazonaws.com/mlfleet-prod")  # each region pulls its own
    primary, *standbys = endpoints
    assert primary.replicas == {"inference-gpu": replicas.primary} and primary.failover_replicas is None
    assert all(s.replicas == {"inference-gpu": replicas.standby} and s.failover_replicas == replicas.on_failover
               for s in standbys)


def test_endpoints_are_read_from_the_synthesized_json(examples):
    env, stacks, _ = examples["prod"]
    changed = copy.deepcopy(stacks)
    for deployment in changed["prod-us-west-2-serving"]["resource"]["kubernetes_deployment_v1"].values():
        deployment["spec"]["replicas"] = "7"
        container = deployment["spec"]["template"]["spec"]["container"][0]
        container["image"] = container["image"].split("@")[0] + "@sha256:" + "0" * 64
    west = {e.region: e for e in serving_endpoints(env, changed)}["us-west-2"]
    assert west.replicas == {"inference-gpu": 7} and west.digest == "sha256:000000000000"


def test_gke_endpoints_are_regional_external_application_load_balancers(examples):
    env, stacks, _ = examples["research"]
    endpoints = {e.region: e for e in serving_endpoints(env, stacks)}
    assert set(endpoints) == {"us-central1", "us-east4"}
    for region, e in endpoints.items():
        assert e.load_balancer == "regional external Application LB" and e.cloud == "gcp"
        assert e.tls_policy == "RESTRICTED, min TLS_1_2"
        assert e.registry == f"{region}-docker.pkg.dev/mlfleet-research/mlfleet-research"
    # A GKE serving stack's AWS provider (Route 53, in us-east-1) does not make it a us-east-1 stack.
    assert provider_region(stacks["research-us-east4-serving"]) == "us-east4"


def test_review_shows_serving_per_region(examples):
    env, stacks, findings = examples["hybrid"]
    markdown = render_markdown(build_review(env, synthesized=(stacks, findings), run_checkov=False))
    serving = markdown.split("## Serving")[1].split("## ")[0]
    assert "| us-east-1 | primary |" in serving and "NLB (internet-facing)" in serving
    assert "| us-central1 | standby |" in serving and "regional external Application LB" in serving
    assert f"inference-gpu 1 → {env.serving.replicas.on_failover} on failover" in serving
    assert "| hybrid-us-central1-serving | us-central1 |" in markdown  # the resources table names its region


def test_picture_shows_each_regions_endpoint(examples):
    for name in EXAMPLES:
        env, stacks, _ = examples[name]
        svg = render_svg(env, stacks)
        for region in env.regions:
            assert f"  {region.name}.{env.serving.dns_name}<" in svg, (name, region.name)
        assert ("serving endpoint (NLB)" in svg) == ("aws" in env.clouds)
        assert ("serving endpoint (regional external ALB)" in svg) == ("gcp" in env.clouds)


def test_cost_prices_load_balancers_and_image_storage_per_region(examples):
    env, stacks, _ = examples["hybrid"]
    lines = {(line.region, line.item): line for line in estimate(stacks).lines}
    nlb = lines[("us-east-1", "Network Load Balancer")]
    assert (nlb.hourly, nlb.units_warm) == (0.0225, 1)
    capacity = lines[("us-east-1", "Network Load Balancer capacity")]
    assert capacity.hourly == 0.006 and capacity.units_warm == NOMINAL_NLCU and "nominal" in capacity.priced_as
    alb = lines[("us-central1", "regional external Application LB")]
    assert alb.hourly == 0.025 and alb.cloud == "gcp" and "forwarding rule" in alb.priced_as
    for region, item in (("us-east-1", "ECR image storage (GB)"),
                         ("us-central1", "Artifact Registry image storage (GB)")):
        storage = lines[(region, item)]
        assert storage.units_warm == NOMINAL_IMAGE_GB and storage.monthly(storage.units_warm, 730) == 1.0
    # One load balancer per region: the serving stack's, none from the regional or global stacks.
    items = [line.item for line in estimate(stacks).lines]
    assert items.count("Network Load Balancer") == len(env.regions_on("aws"))
    assert items.count("regional external Application LB") == len(env.regions_on("gcp"))


def test_ecr_storage_in_every_aws_region_the_image_replicates_to(examples):
    env, stacks, _ = examples["prod"]
    regions = {line.region for line in estimate(stacks).lines if line.item == "ECR image storage (GB)"}
    assert regions == {r.name for r in env.regions}


def test_serving_lines_absent_from_the_price_table_are_not_priced(examples):
    _, stacks, _ = examples["hybrid"]
    prices = Prices.load()
    bare = {cloud: PriceTable(t.cloud, t.generated_at, t.source, t.estimate,
                              {region: {k: v for k, v in entry.items()
                                        if k not in ("nlb", "ecr_storage_gb_month", "load_balancing",
                                                     "artifact_registry_gb_month")}
                               for region, entry in t.regions.items()})
            for cloud, t in prices.tables.items()}
    unpriced = {line.item for line in estimate(stacks, Prices(prices.hours_per_month, bare)).unpriced}
    assert {"Network Load Balancer", "Network Load Balancer capacity", "regional external Application LB",
            "ECR image storage (GB)", "Artifact Registry image storage (GB)"} <= unpriced


def test_every_example_serving_plane_passes_the_serving_rules(examples):
    for name in EXAMPLES:
        env, stacks, findings = examples[name]
        assert not [f for f in findings if "MLF030" <= f.rule <= "MLF039"], name
        # The rules had something to look at: a runtime Deployment in every region's serving stack.
        assert all(stacks[e.stack]["resource"]["kubernetes_deployment_v1"] for e in serving_endpoints(env, stacks))
        assert len(serving_endpoints(env, stacks)) == len(env.regions)
