"""The shipped example environments, each of which has a golden review."""
from __future__ import annotations

EXAMPLES = ("dev", "hybrid", "prod", "research", "staging")
