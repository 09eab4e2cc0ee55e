"""The list prices the cost estimate uses: stacks/review/data/prices.json, one table per cloud, each with
its own date, source and caveats (printed with every estimate that uses it).

The figures are transcribed by hand, never fetched: a price that is not in a table is "not
priced", never guessed. Google Cloud bills a G2 or A3 machine with its GPUs, so its machine
price includes them (an EC2 instance price does too).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from mlfleet.stacks.review.inventory import CLOUD_NAMES

PRICE_FILE = Path(__file__).resolve().parent / "data" / "prices.json"


@dataclass(frozen=True)
class PriceTable:
    """One cloud's hourly USD prices by region, and where they come from."""
    cloud: str
    generated_at: str
    source: str
    estimate: str      # what the estimate leaves out, and what to check before a budget decision
    regions: dict

    def instance(self, region: str, instance_type: str, capacity_type: str) -> float | None:
        """An EC2 instance type's or Compute Engine machine type's hourly price; a spot pool at
        the spot price, any other capacity at the on-demand price."""
        machines = self.regions.get(region, {}).get("ec2" if self.cloud == "aws" else "compute", {})
        prices = machines.get(instance_type) or {}
        return prices.get("spot" if capacity_type == "SPOT" else "on_demand")

    def service(self, region: str, kind: str, *sizes: str) -> float | None:
        """A service's hourly price, looked up by kind and then by each size key in turn."""
        entry = self.regions.get(region, {}).get(kind)
        for size in sizes:
            entry = entry.get(size) if isinstance(entry, dict) else None
        return entry if isinstance(entry, (int, float)) else None


@dataclass(frozen=True)
class Prices:
    hours_per_month: int
    tables: dict[str, PriceTable]      # cloud → its table

    @staticmethod
    @lru_cache(maxsize=2)
    def load(path: Path = PRICE_FILE) -> Prices:
        raw = json.loads(path.read_text())
        return Prices(raw["hours_per_month"], {
            cloud: PriceTable(cloud, t["generated_at"], t["source"], t["estimate"], t["regions"])
            for cloud, t in raw.items() if cloud in CLOUD_NAMES})

    def table(self, cloud: str) -> PriceTable:
        return self.tables.get(cloud) or PriceTable(cloud, "?", "no price table", "", {})
