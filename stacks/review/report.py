"""`mlfleet review`: everything a reviewer reads about one environment, in Markdown fit for a
pull-request comment (tables, long lists folded) or JSON for machines."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from mlfleet.constructs.terraform_json import provider_region
from mlfleet.stacks.environment import Environment
from mlfleet.stacks.review import checkov, cost, dr_rules, rto
from mlfleet.stacks.review.diff import Diff, compare
from mlfleet.stacks.review.findings import ReviewFinding, from_policy
from mlfleet.stacks.review.inventory import CLOUD_NAMES, PoolCapacity, pool_capacity, resources_by_type
from mlfleet.stacks.review.prices import PriceTable
from mlfleet.stacks.review.rto import RpoBudget, RtoBudget
from mlfleet.stacks.review.serving import ServingEndpoint, serving_endpoints
from mlfleet.stacks.review.synth import synthesize_for_review

# Consumed by the config model's RPO check, not by a rule over resources.
CONFIG_RULES = frozenset({"MLF010"})
# What a budget shows for a part with nothing to recover or replicate from.
NOT_RECOVERABLE = "not recoverable"
NOT_DELIVERABLE = "not deliverable"


@dataclass(frozen=True)
class Review:
    env: Environment
    stacks: dict[str, dict]
    findings: list[ReviewFinding]
    checkov: checkov.CheckovRun
    capacity: list[PoolCapacity]
    serving: list[ServingEndpoint]
    cost: cost.CostEstimate
    rto: RtoBudget
    rpo: RpoBudget
    diff: Diff | None
    unused_acknowledgements: list[str]

    @property
    def blocking(self) -> list[ReviewFinding]:
        return [f for f in self.findings if f.blocking]

    @property
    def exit_code(self) -> int:
        return 1 if self.blocking else 0


def build_review(env: Environment, *, base: tuple[dict[str, dict], str] | None = None,
                 run_checkov: bool = True, synthesized: tuple[dict[str, dict], list] | None = None) -> Review:
    """Synthesize `env` (or take `synthesized`: stacks and policy findings) and review it."""
    stacks, policy_findings = synthesized or synthesize_for_review(env)
    scan = checkov.run(stacks) if run_checkov else checkov.CheckovRun(False, None, [], "checkov was not run (disabled)")
    findings = sorted([from_policy(f) for f in policy_findings] + dr_rules.evaluate(env, stacks) + scan.findings,
                      key=ReviewFinding.sort_key)
    rpo = rto.rpo_budget(env, stacks)
    used = {f.rule for f in findings if f.acknowledged} | ({"MLF010"} if rpo.acknowledgement else set())
    unused = [f"{a.rule} ({a.resource}): {a.reason}" for a in env.acknowledgements if a.rule not in used]
    return Review(
        env=env, stacks=stacks, findings=findings, checkov=scan,
        capacity=[p for name, tf in sorted(stacks.items(), key=lambda kv: _region_order(env, kv[1]))
                  for p in pool_capacity(name, tf)],
        serving=serving_endpoints(env, stacks),
        cost=cost.estimate(stacks), rto=rto.rto_budget(env, stacks), rpo=rpo,
        diff=compare(base[0], stacks, base[1]) if base is not None else None,
        unused_acknowledgements=unused)


def _region_order(env: Environment, tf: dict) -> tuple[int, str]:
    names = [r.name for r in (env.primary, *env.standbys)]
    region = provider_region(tf)
    return (names.index(region) if region in names else len(names), region or "")


# --- Markdown -------------------------------------------------------------------------------

def _usd(value: float | None) -> str:
    return "n/a" if value is None else f"${value:,.2f}"


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return "unbounded"
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds // 3600} h ({seconds} s)"
    minutes, rest = divmod(seconds, 60)
    if not minutes:
        return f"{rest} s"
    return f"{minutes} min" + (f" {rest} s" if rest else "") + f" ({seconds} s)"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def render_markdown(review: Review, diagram: str | None = None) -> str:
    env = review.env
    out = [f"# mlfleet review: {env.name}", ""]
    # Name the clouds once Google Cloud is in play; an all-AWS review reads as it always did.
    cloud = (lambda r: f" ({CLOUD_NAMES[r.cloud]})") if env.regions_on("gcp") else (lambda r: "")
    standbys = ", ".join(r.name + cloud(r) for r in env.standbys) or "none"
    resources = sum(sum(resources_by_type(tf).values()) for tf in review.stacks.values())
    out.append(f"Primary **{env.primary.name}**{cloud(env.primary)}, standby {standbys}; {len(review.stacks)} stacks, "
               f"{resources} resources. RTO target {_duration(env.targets.rto)}, "
               f"RPO target {_duration(env.targets.rpo)}.")
    out.append("")
    blocking = review.blocking
    if blocking:
        out.append(f"**Blocked: {len(blocking)} unacknowledged high-severity finding(s).** Fix them, or acknowledge "
                   "each in the environment file with a reason.")
    else:
        out.append("**No unacknowledged high-severity finding.**")
    out.append("")
    if review.diff is not None:
        out += _diff_section(review.diff)
    out += _findings_section(review)
    out += _recovery_section(review)
    out += _capacity_section(review)
    out += _serving_section(review)
    out += _cost_section(review)
    out += _resources_section(review)
    if diagram:
        out += ["## Architecture", "", f"![{env.name} architecture]({diagram})", ""]
    return "\n".join(out).rstrip() + "\n"


def _diff_section(diff: Diff) -> list[str]:
    out = ["## Changes", "", f"Against {diff.base}.", ""]
    for change in diff.warnings:
        what = "DELETES" if change.action == "removed" else "REPLACES"
        reason = change.note or "the resource is no longer in the code"
        out.append(f"> **WARNING: this change {what} stateful resource `{change.address}` in {change.stack}** "
                   f"({reason}). Its data goes with it unless it is moved or retained first.")
        out.append("")
    if diff.stacks_added:
        out += [f"Stacks added: {', '.join(diff.stacks_added)}", ""]
    if diff.stacks_removed:
        out += [f"**Stacks removed: {', '.join(diff.stacks_removed)}**", ""]
    if not diff.changes:
        return out + ["No resource changes.", ""]
    counts = {a: sum(1 for c in diff.changes if c.action == a) for a in ("added", "removed", "changed", "replaced")}
    out += [", ".join(f"{n} {a}" for a, n in counts.items()), ""]
    rows = []
    for c in diff.changes:
        paths = ", ".join(f"`{p}`" + (" (ignored by lifecycle)" if p in c.ignored else "") for p in c.paths[:8])
        if len(c.paths) > 8:
            paths += f", … {len(c.paths) - 8} more"
        rows.append([c.action + (" (stateful)" if c.stateful else ""), c.stack, f"`{c.address}`",
                     "; ".join(x for x in (paths, c.note) if x)])
    big = len(rows) > 20
    if big:
        out += ["<details><summary>All resource changes</summary>", ""]
    out += _table(["action", "stack", "resource", "attributes"], rows)
    out += ["", "</details>", ""] if big else [""]
    return out


def _findings_section(review: Review) -> list[str]:
    out = ["## Findings", ""]
    if review.findings:
        out += _table(["severity", "rule", "source", "stack", "resource", "finding", "fix", "acknowledged"],
                      [[f.severity, f.rule, f.source, f.stack, f"`{f.path}`", f"{f.title}: {f.message}", f.fix,
                        f.acknowledged or "**no**"] for f in review.findings])
    else:
        # Here: the policy package's import loads the CDK, which a report read from files never needs.
        from mlfleet.constructs.policy import RULES

        dr = sorted(dr_rules.DR_RULES)
        out.append(f"No findings from mlfleet's rule pack ({_id_ranges(RULES)}) or its DR rules ({dr[0]}–{dr[-1]}).")
    out += ["", review.checkov.note + "."]
    if review.unused_acknowledgements:
        out += ["", "Acknowledgements in the environment file that match no finding (stale?):", ""]
        out += [f"- {a}" for a in review.unused_acknowledgements]
    return out + [""]


def _id_ranges(ids: Iterable[str]) -> str:
    """MLF001–MLF007, MLF030–MLF035: the rule ids as runs of consecutive numbers."""
    runs: list[list[int]] = []
    for number in sorted(int(i.removeprefix("MLF")) for i in ids):
        if runs and number == runs[-1][-1] + 1:
            runs[-1].append(number)
        else:
            runs.append([number])
    return ", ".join(f"MLF{r[0]:03d}" + (f"–MLF{r[-1]:03d}" if len(r) > 1 else "") for r in runs)


def _recovery_section(review: Review) -> list[str]:
    out = ["## Recovery budget", ""]
    budget = review.rto
    if not budget.parts:
        out += [f"RTO: n/a — no standby region; losing {review.env.primary.name} means redeploying elsewhere "
                f"(target {_duration(budget.target)}).", ""]
    else:
        total = NOT_RECOVERABLE if budget.total is None else _duration(budget.total)
        out += _table(["RTO component", "time", "on the longest path", "basis"],
                      [[p.name, NOT_RECOVERABLE if p.missing else _duration(p.seconds),
                        "yes" if p.on_critical_path else "no: runs beside it", p.basis] for p in budget.parts]
                      + [["**total** (the plan's longest path)", f"**{total}**", "",
                          f"target {_duration(budget.target)}"]])
        missing = [p.name for p in budget.parts if p.missing]
        why = (f"{', '.join(missing)} not recoverable; the other parts add up to "
               f"{_duration(budget.recoverable_total)}" if missing else _duration(budget.total))
        out += ["", f"RTO verdict: **{budget.verdict}** ({why} against {_duration(budget.target)}).", ""]
    rpo = review.rpo
    if not rpo.parts:
        return out + ["RPO: n/a — nothing is replicated to another region.", ""]
    out += _table(["data", "RPO deliverable", "basis"],
                  [[p.data, NOT_DELIVERABLE if p.missing else _duration(p.seconds), p.basis] for p in rpo.parts])
    deliverable = NOT_DELIVERABLE if any(p.missing for p in rpo.parts) else _duration(rpo.deliverable)
    out += ["", f"RPO verdict: **{rpo.verdict}** ({deliverable} against {_duration(rpo.target)})."
            + (f" Acknowledged (MLF010): {rpo.acknowledgement}"
               if rpo.acknowledgement and not rpo.verdict.startswith("pass") else ""),
            ""]
    return out


def _capacity_section(review: Review) -> list[str]:
    out = ["## GPU capacity", "", "Warm: what runs before a failover (the primary runs its minimum). "
           "Min: what the region serves with once it is primary.", ""]
    out += _table(["region", "pool", "instance types", "GPU", "capacity", "GPUs/node",
                   "GPUs warm", "GPUs min", "GPUs max"],
                  [[p.region, p.pool, ", ".join(p.instance_types), p.gpu, p.capacity_type.lower(), p.gpus_per_node,
                    p.gpus_warm, p.gpus_min, p.gpus_max] for p in review.capacity])
    return out + [""]


def _serving_section(review: Review) -> list[str]:
    if not review.serving:
        return []
    out = ["## Serving", "", "Runtime pods per pool as created (a standby's are warm, models loaded); a standby's "
           "failover size is `serving.replicas.failover`, which the DR runbook scales to.", ""]
    out += _table(["region", "role", "image", "digest", "runtime pods", "endpoint", "load balancer", "TLS policy",
                   "manifest verified with"],
                  [[e.region, e.role, f"{e.image_name} ({e.registry})", f"`{e.digest}`", _pods(e),
                    e.hostname or "none", _load_balancer(e), e.tls_policy or "n/a",
                    f"`{e.manifest_key}` ({e.manifest_key_service})" if e.manifest_key else "**nothing (unsigned)**"]
                   for e in review.serving])
    return out + [""]


def _pods(endpoint: ServingEndpoint) -> str:
    after = f" → {endpoint.failover_replicas} on failover" if endpoint.failover_replicas is not None else ""
    return ", ".join(f"{pool} {count}{after}" for pool, count in endpoint.replicas.items()) or "none"


def _load_balancer(endpoint: ServingEndpoint) -> str:
    if endpoint.load_balancer is None:
        return "none"
    return endpoint.load_balancer + (f" ({endpoint.scheme})" if endpoint.scheme else "")


def _cost_section(review: Review) -> list[str]:
    estimate = review.cost
    hours = estimate.hours_per_month
    # Each cloud's table brings its own date, source and caveats.
    provenance = [f"**Estimate** from the {_cloud_prefix(estimate, t)}price table of {t.generated_at} "
                  f"({t.source}). {t.estimate}" for t in estimate.tables] or ["**Estimate**: nothing priced."]
    provenance[-1] += f" Monthly = hourly × {hours}."
    out = ["## Estimated monthly cost", "", "\n\n".join(provenance), ""]
    out += _table(["region", "item", "priced as", "USD/hour", "units warm", "monthly warm", "units min", "monthly min"],
                  [[line.region, line.item, line.priced_as, _unit_price(line),
                    line.units_warm, _usd(line.monthly(line.units_warm, hours)), line.units_min,
                    _usd(line.monthly(line.units_min, hours))] for line in estimate.lines])
    out += ["", f"Steady state (primary at minimum, standbys warm): **{_usd(estimate.total('warm'))}** per month. "
            "Every region at its minimum (after a failover scales the standbys): "
            f"**{_usd(estimate.total('min'))}** per month."]
    for line in estimate.unpriced:
        out.append(f"Not priced (absent from the price table): {line.item} in {line.region}, as {line.priced_as}.")
    return out + [""]


def _unit_price(line: cost.CostLine) -> str:
    if line.per_month is not None:
        return f"{line.per_month:g}/month"
    return "n/a" if line.hourly is None else f"{line.hourly:g}"


def _cloud_prefix(estimate: cost.CostEstimate, table: PriceTable) -> str:
    return f"{CLOUD_NAMES[table.cloud]} " if len(estimate.tables) > 1 else ""


def _resources_section(review: Review) -> list[str]:
    names = sorted(review.stacks)
    counts = {name: resources_by_type(tf) for name, tf in review.stacks.items()}
    types = sorted({t for c in counts.values() for t in c})
    out = ["## Resources", ""]
    out += _table(["stack", "region", "resources"],
                  [[n, provider_region(review.stacks[n]) or "", sum(counts[n].values())] for n in names])
    out += ["", "<details><summary>Resources by type</summary>", ""]
    out += _table(["type", *names], [[t, *[counts[n].get(t, 0) for n in names]] for t in types])
    return out + ["", "</details>", ""]


# --- JSON ------------------------------------------------------------------------------------

def to_json(review: Review, diagram: str | None = None) -> dict:
    env = review.env
    hours = review.cost.hours_per_month
    return {
        "environment": env.name,
        "primary": env.primary.name,
        "standbys": [r.name for r in env.standbys],
        "blocking": len(review.blocking),
        "findings": [{k: getattr(f, k) for k in ("severity", "rule", "title", "source", "stack", "address", "path",
                                                   "message", "fix", "acknowledged")} for f in review.findings],
        "checkov": {"ran": review.checkov.ran, "version": review.checkov.version, "note": review.checkov.note},
        "unused_acknowledgements": review.unused_acknowledgements,
        "rto": {"target_s": review.rto.target, "budget_s": review.rto.total if review.rto.parts else None,
                "verdict": review.rto.verdict,
                "parts": [{"name": p.name, "seconds": p.seconds, "basis": p.basis, "missing": p.missing,
                           "on_critical_path": p.on_critical_path}
                          for p in review.rto.parts]},
        "rpo": {"target_s": review.rpo.target, "deliverable_s": review.rpo.deliverable, "verdict": review.rpo.verdict,
                "acknowledgement": review.rpo.acknowledgement,
                "parts": [{"data": p.data, "seconds": p.seconds, "basis": p.basis, "missing": p.missing,
                           "enforced": p.enforced} for p in review.rpo.parts]},
        "gpu_capacity": [{"region": p.region, "stack": p.stack, "pool": p.pool,
                          "instance_types": list(p.instance_types), "gpu": p.gpu, "cloud": p.cloud,
                          "capacity_type": p.capacity_type, "gpus_per_node": p.gpus_per_node,
                          "nodes": {"warm": p.nodes_warm, "min": p.nodes_min, "max": p.nodes_max},
                          "gpus": {"warm": p.gpus_warm, "min": p.gpus_min, "max": p.gpus_max}}
                         for p in review.capacity],
        "serving": [{"region": e.region, "stack": e.stack, "cloud": e.cloud, "role": e.role, "image": e.image,
                     "digest": e.digest, "replicas": e.replicas, "failover_replicas": e.failover_replicas,
                     "endpoint": e.hostname, "load_balancer": e.load_balancer, "scheme": e.scheme,
                     "tls_policy": e.tls_policy, "manifest_key": e.manifest_key} for e in review.serving],
        "cost_estimate": {
            "estimate": True,
            "price_tables": [{"cloud": t.cloud, "date": t.generated_at, "source": t.source, "caveats": t.estimate}
                             for t in review.cost.tables],
            "currency": "USD", "hours_per_month": hours,
            "monthly_warm": review.cost.total("warm"), "monthly_min": review.cost.total("min"),
            "lines": [{"region": line.region, "cloud": line.cloud, "item": line.item, "priced_as": line.priced_as,
                       "hourly": line.hourly, "per_month": line.per_month,
                       "units_warm": line.units_warm, "units_min": line.units_min,
                       "monthly_warm": line.monthly(line.units_warm, hours),
                       "monthly_min": line.monthly(line.units_min, hours)} for line in review.cost.lines]},
        "resources": {name: resources_by_type(tf) for name, tf in sorted(review.stacks.items())},
        "diff": None if review.diff is None else {
            "base": review.diff.base, "stacks_added": review.diff.stacks_added,
            "stacks_removed": review.diff.stacks_removed,
            "warnings": [f"{c.stack}: {c.action} {c.address}" for c in review.diff.warnings],
            "changes": [{"stack": c.stack, "address": c.address, "action": c.action, "stateful": c.stateful,
                         "paths": list(c.paths), "ignored_paths": list(c.ignored), "note": c.note}
                        for c in review.diff.changes]},
        "diagram": diagram,
    }
