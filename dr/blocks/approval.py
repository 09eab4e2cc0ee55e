"""A person's approval: where the environment asks for one (`dr.approvals`), the run waits until
an identity other than the one that started it runs `mlfleet approve RUN`."""
from __future__ import annotations

from dataclasses import dataclass

from mlfleet.dr import approvals
from mlfleet.dr.engine import Block, Check, Facts, RunContext
from mlfleet.dr.target import Target

APPROVAL_TIMEOUT_S = 3600.0


@dataclass(frozen=True)
class Approved(Facts):
    approver: str = ""
    requested_by: str = ""
    at: float = 0.0


class ManualApproval(Block):
    facts_type = Approved

    def __init__(self, target: Target, mode: str, *, after: tuple[str, ...] | None = None,
                 timeout_s: float = APPROVAL_TIMEOUT_S):
        super().__init__("approval", f"wait for another identity to approve this {mode}", after=after)
        self.target, self.mode, self.timeout_s = target, mode, timeout_s

    def precondition(self, ctx: RunContext) -> Check:
        return Check.passed(f"dr.approvals lists {self.mode}: another identity than the one who started the run "
                            "must run `mlfleet approve RUN`")

    def preview(self, ctx: RunContext) -> str:
        return "approval required from another identity (`mlfleet approve RUN`)"

    def action(self, ctx: RunContext) -> Approved:
        requested_by = approvals.caller_identity(self.target)
        approvals.request(self.target, ctx.run_id, self.mode, requested_by)
        ctx.progress(f"  waiting for approval: run `mlfleet approve {ctx.run_id} --env {self.target.env.name}` "
                     "as another identity")
        found = approvals.wait(self.target, ctx, ctx.run_id, self.timeout_s)
        return Approved(summary=f"approved by {found.approver}", approver=found.approver,
                        requested_by=requested_by, at=found.at)
