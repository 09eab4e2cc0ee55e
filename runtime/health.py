"""Failover health: the one answer Route 53 and the DR drills trust. It says whether this region
serves CORRECTLY: healthy only when every model serves its pinned champion with verified
checksums, its golden canary passed recently, and the error rate of admitted requests is within
bounds. Load is not a fault: queue depth is reported but never fails over (admission control in
the data plane sheds the excess instead), so a traffic spike, global or hostile, cannot take a
region out of DNS. Answers from the event loop without touching any model, so it stays fast
while inference saturates the process.

`failover_health` builds the full diagnostic document (models, versions, GPU, queue depth, error
rate, signing key, reasons); `public_failover_health` redacts it to what routing needs, for the
public listener, which anyone the load balancer admits can reach."""
from __future__ import annotations

import time
from dataclasses import dataclass

from .gpu import gpu_report
from .manager import ModelManager

HEALTHY_TOKEN = "MLFLEET_FAILOVER_OK"
# What a Route 53 or Google health check, or an outside prober, needs: the token to match (or
# FAILING) and the region, which DNS already names. Deliberately no failing category: routing never
# reads one, and "error_rate" would tell whoever provokes server errors that they move the region.
PUBLIC_FIELDS = ("status", "region")


@dataclass(frozen=True)
class HealthBounds:
    canary_max_age_s: float = 90.0
    max_error_rate: float = 0.05
    min_requests_for_error_rate: int = 20


def failover_health(manager: ModelManager, bounds: HealthBounds, *, region: str, draining: bool,
                    gpu: dict | None = None) -> tuple[bool, dict]:
    reasons: list[str] = []
    models: dict[str, dict] = {}
    now = time.time()
    queue_depth = 0
    requests = errors = 0
    if draining:
        reasons.append("shutting down")
    if manager.manifest is None:
        reasons.append("manifest not loaded")
    for model in sorted(manager.manifest.models if manager.manifest else ()):
        champion = manager.champion(model)
        serving = manager.active.get(model)
        if serving is None:
            reasons.append(f"{model}: not loaded")
            models[model] = {"version": None, "champion": champion, "checksum_verified": False,
                             "canary_passed_at": None}
            continue
        passed_at = serving.canary_passed_at
        models[model] = {
            "version": serving.version,
            "champion": champion,
            "checksum_verified": serving.checksum_verified,
            "canary_passed_at": (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(passed_at))
                                 if passed_at else None),
        }
        if serving.version != champion:
            reasons.append(f"{model}: serving version {serving.version}, the champion is {champion}")
        if not serving.checksum_verified:
            reasons.append(f"{model}: checksum not verified")
        if serving.canary_failure:
            reasons.append(f"{model}: last canary failed: {serving.canary_failure}")
        elif passed_at is None or now - passed_at > bounds.canary_max_age_s:
            reasons.append(f"{model}: no canary passed in the last {bounds.canary_max_age_s:g} s")
        depth = serving.batcher.depth
        queue_depth += depth
        rate, count = serving.stats.error_rate()
        requests += count
        errors += round(rate * count)
    error_rate = errors / requests if requests else 0.0
    if requests >= bounds.min_requests_for_error_rate and error_rate > bounds.max_error_rate:
        reasons.append(f"error rate {error_rate:.3f} exceeds {bounds.max_error_rate:g}")
    healthy = not reasons
    body = {
        "status": HEALTHY_TOKEN if healthy else "FAILING",
        "region": region,
        "models": models,
        "gpu": gpu if gpu is not None else gpu_report(),
        "queue_depth": queue_depth,
        "error_rate": round(error_rate, 6),
        # which key approved what is served; an unverified manifest (--allow-unsigned) says so
        "manifest_signature": ({"verified": True, "key_id": manager.signature.key_id} if manager.signature
                               else {"verified": False, "key_id": None}),
    }
    if not healthy:
        # The token must never appear in a failing body (Route 53 matches it as a substring).
        body["reasons"] = [r.replace(HEALTHY_TOKEN, "<token>") for r in reasons]
    return healthy, body


def public_failover_health(document: dict) -> dict:
    """The failover health document as the public listener serves it: status and region only."""
    return {field: document[field] for field in PUBLIC_FIELDS}
