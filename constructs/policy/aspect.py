"""The CDK Aspect that puts every stack under the rule pack, and acknowledges findings."""
from __future__ import annotations

import fnmatch
from typing import Iterable

import jsii
from cdktn import IAspect, TerraformStack
from constructs import IConstruct

from mlfleet.constructs.acknowledgements import acknowledgements_for
from mlfleet.constructs.policy.engine import evaluate_terraform
from mlfleet.constructs.policy.findings import ConfigAcknowledgement, Finding


@jsii.implements(IAspect)
class PolicyAspect:
    """Puts every stack it visits under the rule pack (see the package docstring).

    References between resources resolve only in a stack's synthesized JSON, so the rules
    run there: after synth, `evaluate(stack_name, terraform_json)` returns the stack's
    findings with their acknowledgements and records them in `findings`.
    """

    def __init__(self, acknowledgements: Iterable[ConfigAcknowledgement] = ()):
        self._config_acks = list(acknowledgements)
        self._stacks: dict[str, TerraformStack] = {}
        self.findings: list[Finding] = []

    def visit(self, node: IConstruct) -> None:
        if isinstance(node, TerraformStack):
            self.watch(node)

    def watch(self, stack: TerraformStack) -> None:
        """Put `stack` under the rule pack: what `Aspects.of(stack).add(aspect)` does, without a
        callback for every construct of its tree."""
        self._stacks[stack.node.id] = stack

    @property
    def stack_names(self) -> list[str]:
        return list(self._stacks)

    def evaluate(self, stack_name: str, tf: dict) -> list[Finding]:
        stack = self._stacks[stack_name]
        results = [Finding(**{**f.__dict__, "acknowledged": self._acknowledgement(stack, f)})
                   for f in evaluate_terraform(stack_name, tf)]
        self.findings.extend(results)
        return results

    def _acknowledgement(self, stack: TerraformStack, finding: Finding) -> str | None:
        construct = _find(stack, finding.path)
        if construct is not None:
            found = acknowledgements_for(construct, finding.rule)
            if found:
                return found[0].reason
        for ack in self._config_acks:
            if ack.rule == finding.rule and fnmatch.fnmatchcase(finding.path, ack.resource):
                return ack.reason
        return None

    @property
    def violations(self) -> list[Finding]:
        return [f for f in self.findings if f.acknowledged is None]


def _find(stack: TerraformStack, path: str) -> IConstruct | None:
    """The construct at `path` (`<stack>/<id>/<id>…`), or None (e.g. a provider block)."""
    node: IConstruct = stack
    for part in path.split("/")[1:]:
        child = node.node.try_find_child(part)
        if child is None:
            return None
        node = child
    return node
