"""What a drift is, and how intent is compared with live state: shared by the AWS reads
(`drift.py`) and the Google Cloud reads (`drift_gcp.py`)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Drift:
    region: str        # the region, or "global"
    resource: str      # what, in words a reader can find in the console
    attribute: str
    live: str
    code: str

    def as_dict(self) -> dict:
        return asdict(self)


def show(value) -> str:
    """A value as the report prints it: JSON for structures and booleans, `absent` for None."""
    if value is None:
        return "absent"
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list, bool)) else str(value)


def compare(region: str, resource: str, pairs: list[tuple[str, object, object]]) -> list[Drift]:
    """A drift for each (attribute, live, code) whose live value is not the code's."""
    return [Drift(region, resource, attribute, show(live), show(code))
            for attribute, live, code in pairs if live != code]
