"""A runbook block made of functions, for testing the engine apart from the real blocks."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from mlfleet.dr.engine import Block, Check, Facts, RunContext


@dataclass(frozen=True)
class DictFacts(Facts):
    values: dict = field(default_factory=dict)

    def get(self, key: str, default=None):
        return self.values.get(key, default)

    def as_dict(self) -> dict:
        return self.values

    @classmethod
    def from_dict(cls, data: dict) -> "DictFacts":
        return cls(summary=str(data.get("summary", "")), values=data)


class Step(Block):
    """A block made of functions, for the engine's own tests: its facts are a dict."""

    facts_type = DictFacts

    def __init__(self, name: str, summary: str, action: Callable[[RunContext], dict | None],
                 preview: Callable[[RunContext], str], precondition: Callable[[RunContext], Check] | None = None,
                 verify: Callable[[RunContext], bool | str] | None = None, verify_timeout_s: float = 60.0,
                 compensate: Callable[[RunContext], None] | None = None, after: tuple[str, ...] | None = None,
                 phase: str | None = None):
        super().__init__(name, summary, after=after, phase=phase)
        self._action, self._preview, self._precondition = action, preview, precondition
        self._verify, self._compensate = verify, compensate
        self.verify_timeout_s = verify_timeout_s

    def precondition(self, ctx):
        return self._precondition(ctx) if self._precondition else Check.passed()

    def preview(self, ctx):
        return self._preview(ctx)

    def action(self, ctx):
        values = self._action(ctx) or {}
        return DictFacts(summary=str(values.get("summary", "")), values=values)

    def verify(self, ctx, facts):
        return self._verify(ctx) if self._verify else True

    def compensate(self, ctx, facts):
        if self._compensate:
            self._compensate(ctx)

    @property
    def compensable(self) -> bool:
        return self._compensate is not None
