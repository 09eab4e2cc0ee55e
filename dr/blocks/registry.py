"""The registry database's writer, and the blocks that move it: an Aurora global database
switchover or failover between AWS regions, a Cloud SQL replica's promotion (or the DMS job's, for a
Cloud SQL instance that follows Aurora) and the hardening a promoted DMS destination needs.

Writable is proven by a write through the new writer, never read from a status string."""
from __future__ import annotations

from dataclasses import dataclass

from mlfleet.dr import aws, gcp
from mlfleet.dr.engine import Block, Check, Facts, Gate, RunContext, StepFailed
from mlfleet.dr.target import Target
from mlfleet.stacks.environment import naming


def registry_writer(target: Target, ctx: RunContext, *, via: str, strict: bool = False) -> str:
    """The region whose registry database takes writes now.

    Google Cloud first: a Cloud SQL primary writes (research), and so does a DMS destination once
    promoted (hybrid after a failover). Otherwise the Aurora global database's writer, asked through
    `via` when it is on AWS, else through each AWS region in turn. When no AWS region answers, a
    non-strict caller (an unplanned failover: the writer's region is the one lost) gets the last
    writer Aurora can have had, the environment's primary."""
    env = target.env
    if env.regions_on("gcp"):
        writer = gcp.sql_writer_region(target, ctx)
        if writer is not None or env.primary.cloud == "gcp":
            if writer is None:
                raise StepFailed("no Cloud SQL instance of the registry takes writes")
            return writer
    regions = [r.name for r in env.regions_on("aws")]
    order = ([via] if via in regions else []) + [r for r in regions if r != via]
    errors = []
    for region in order:
        try:
            writer = aws.writer_region(aws.describe_global_cluster(target, ctx, region))
        except Exception as exc:  # noqa: BLE001 - the next region may answer
            errors.append(f"{region}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            continue
        if writer:
            return writer
        errors.append(f"{region}: the global cluster has no writer")
    if strict or env.primary.cloud != "aws":
        raise StepFailed("the registry's writer cannot be read: " + "; ".join(errors))
    return env.primary.name


@dataclass(frozen=True)
class Promoted(Facts):
    region: str = ""
    kind: str = ""
    """aurora-switchover | aurora-failover | cloud-sql-promotion | dms-promotion"""


class AuroraPromotion(Block):
    """Aurora global database: a switchover (planned, RPO 0) or a failover with AllowDataLoss."""

    facts_type = Promoted
    verify_timeout_s = 600.0

    def __init__(self, target: Target, to_region: str, *, planned: bool, after: tuple[str, ...] | None = None):
        super().__init__("promote-registry", f"make {to_region}'s registry the writer", after=after,
                         phase="registry_writable")
        self.target, self.to_region, self.planned = target, to_region, planned
        self.kind = "aurora-switchover" if planned else "aurora-failover"

    def precondition(self, ctx: RunContext) -> Check:
        from mlfleet.dr.blocks.checks import Declared

        source = ctx.need(Declared).source
        if self.target.env.region(source).cloud == "gcp":
            # Aurora stopped following when Cloud SQL was promoted (hybrid): bringing it back in
            # step is a migration of its own (a reverse migration job, or a dump and restore).
            return Gate(False, f"the registry's writer is {source}'s Cloud SQL, which Aurora in {self.to_region} "
                               "no longer follows: bring Aurora back in step from it (a reverse migration job, or a "
                               "dump and restore), then fail back; nothing was changed")
        return Check.passed()

    def preview(self, ctx: RunContext) -> str:
        how = "switchover" if self.planned else "failover (AllowDataLoss)"
        return f"{how} of the global cluster to {self.to_region}"

    def action(self, ctx: RunContext) -> Promoted:
        summary = aws.request_promotion(self.target, ctx, self.to_region, planned=self.planned)
        return Promoted(summary=summary, region=self.to_region, kind=self.kind)

    def verify(self, ctx: RunContext, facts: Promoted) -> bool | str:
        done = aws.promotion_done(self.target, ctx, self.to_region)
        if done is not True:
            return done
        writable, detail = aws.registry_writable(self.target, ctx, self.to_region)
        return True if writable else f"promoted, but no write went through: {detail}"

    def still_holds(self, ctx: RunContext, facts: Promoted) -> Check:
        writer = registry_writer(self.target, ctx, via=self.to_region)
        return (Check.passed() if writer == self.to_region else
                Check.failed(f"the registry's writer is {writer}, not {self.to_region} as this run left it"))

    def compensate(self, ctx: RunContext, facts: Promoted) -> None:
        if not self.planned:
            return  # the old writer's region is lost: there is nothing to switch back to
        from mlfleet.dr.blocks.checks import Declared

        source = ctx.need(Declared).source
        # the switchover this block asked for may still be under way: another cannot start before it ends
        ctx.wait_until("the switchover under way to end", lambda: aws.promotion_settled(self.target, ctx, source),
                       self.verify_timeout_s)
        aws.request_promotion(self.target, ctx, source, planned=True)
        ctx.wait_until("registry back to the source", lambda: aws.promotion_done(self.target, ctx, source), 120)


class CloudSqlPromotion(Block):
    """Cloud SQL: promote the target's replica (research), or end the DMS job whose destination
    follows Aurora (hybrid). A promotion has no undo: a promoted instance does not become a
    replica again; its compensation is a new replica, which is not a runbook's to make."""

    facts_type = Promoted
    verify_timeout_s = 600.0

    def __init__(self, target: Target, to_region: str, *, planned: bool, after: tuple[str, ...] | None = None):
        super().__init__("promote-registry", f"make {to_region}'s Cloud SQL registry the writer", after=after,
                         phase="registry_writable")
        self.target, self.to_region, self.planned = target, to_region, planned
        source = target.env.primary
        self.kind = "dms-promotion" if source.cloud == "aws" else "cloud-sql-promotion"

    def preview(self, ctx: RunContext) -> str:
        return ("promote the DMS migration job: its Cloud SQL destination stops following Aurora"
                if self.kind == "dms-promotion" else f"promote {self.to_region}'s Cloud SQL replica")

    def action(self, ctx: RunContext) -> Promoted:
        return Promoted(summary=gcp.promote_registry(self.target, ctx, self.to_region), region=self.to_region,
                        kind=self.kind)

    def verify(self, ctx: RunContext, facts: Promoted) -> bool | str:
        done = gcp.registry_promotion_done(self.target, ctx, self.to_region)
        if done is not True:
            return done
        writable, detail = gcp.registry_writable(self.target, ctx, self.to_region)
        return True if writable else f"promoted, but no write went through: {detail}"

    def still_holds(self, ctx: RunContext, facts: Promoted) -> Check:
        writer = registry_writer(self.target, ctx, via=self.to_region)
        return (Check.passed() if writer == self.to_region else
                Check.failed(f"the registry's writer is {writer}, not {self.to_region} as this run left it"))


class HardenPromotedInstance(Block):
    """A DMS destination is created without regional HA or deletion protection; a primary needs both."""

    def __init__(self, target: Target, region: str):
        super().__init__("harden-registry", f"give {region}'s new registry primary regional HA and deletion "
                                            "protection", after=("promote-registry",))
        self.target, self.region = target, region

    def preview(self, ctx: RunContext) -> str:
        return f"{self.region}'s Cloud SQL instance: availabilityType REGIONAL, deletionProtectionEnabled"

    def action(self, ctx: RunContext) -> Facts:
        instance = naming.cloud_sql_instance(self.target.env.name, self.region)
        return Facts(summary=gcp.harden_promoted_instance(self.target, ctx, self.target.gcp_project, instance))
