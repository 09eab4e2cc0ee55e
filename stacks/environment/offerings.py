"""Where each NVIDIA GPU instance type is offered, from a table shipped in the repository.

The table carries its date and source; `mlfleet capacity refresh` rebuilds it from EC2's
DescribeInstanceTypes and DescribeInstanceTypeOfferings (any endpoint boto3 can reach).
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

AWS_TABLE = Path(__file__).resolve().parent / "data" / "aws_gpu_offerings.json"
# Families whose instances carry NVIDIA GPUs usable by the NVIDIA EKS AMIs (x86_64).
GPU_FAMILY_FILTERS = ["g4dn.*", "g5.*", "g6.*", "g6e.*", "gr6.*", "g7.*", "g7e.*", "p3dn.*",
                      "p4d.*", "p4de.*", "p5.*", "p5e.*", "p5en.*", "p6-b200.*", "p6-b300.*"]


@dataclass(frozen=True)
class GpuInstanceType:
    name: str
    gpu: str
    gpus: int
    gpu_memory_mib: int


@dataclass(frozen=True)
class GpuOfferings:
    generated_at: str
    source: str
    instance_types: dict[str, GpuInstanceType]
    regions: dict[str, frozenset[str]]

    @staticmethod
    @lru_cache(maxsize=4)
    def load(path: Path = AWS_TABLE) -> GpuOfferings:
        raw = json.loads(path.read_text())
        return GpuOfferings(
            generated_at=raw["generated_at"],
            source=raw["source"],
            instance_types={n: GpuInstanceType(name=n, **v) for n, v in raw["instance_types"].items()},
            regions={r: frozenset(types) for r, types in raw["regions"].items()},
        )

    def is_gpu_type(self, instance_type: str) -> bool:
        return instance_type in self.instance_types

    def offered(self, instance_type: str, region: str) -> bool:
        return instance_type in self.regions.get(region, frozenset())

    def gpus(self, instance_type: str) -> int:
        return self.instance_types[instance_type].gpus


def refresh_aws_table(session, regions: list[str] | None, source: str, out: Path = AWS_TABLE) -> dict:
    """Rebuild the table through boto3 `session` and write it atomically; returns the table."""
    ec2 = session.client("ec2", region_name="us-east-1")
    if regions is None:
        regions = sorted(r["RegionName"] for r in ec2.describe_regions(AllRegions=False)["Regions"])
    filters = [{"Name": "instance-type", "Values": GPU_FAMILY_FILTERS}]
    types: dict[str, dict] = {}
    for page in ec2.get_paginator("describe_instance_types").paginate(Filters=filters):
        for item in page["InstanceTypes"]:
            gpu_info = item.get("GpuInfo") or {}
            gpus = gpu_info.get("Gpus") or []
            # Fractional-GPU types (count 0) cannot run a whole-GPU serving pod; leave them out.
            if not gpus or gpus[0].get("Manufacturer") != "NVIDIA" or gpus[0].get("Count", 0) < 1:
                continue
            if "x86_64" not in item.get("ProcessorInfo", {}).get("SupportedArchitectures", []):
                continue
            types[item["InstanceType"]] = {
                "gpu": gpus[0]["Name"], "gpus": sum(g["Count"] for g in gpus),
                "gpu_memory_mib": gpu_info.get("TotalGpuMemoryInMiB", 0)}
    by_region: dict[str, list[str]] = {}
    for region in regions:
        client = session.client("ec2", region_name=region)
        offered: set[str] = set()
        # Intersected with the GPU types below rather than filtered by wildcard: not every
        # EC2-compatible endpoint implements wildcards in this filter.
        for page in client.get_paginator("describe_instance_type_offerings").paginate(
                LocationType="region"):
            offered.update(o["InstanceType"] for o in page["InstanceTypeOfferings"])
        by_region[region] = sorted(offered & types.keys())
    table = {
        "generated_at": dt.date.today().isoformat(),
        "source": source,
        "instance_types": dict(sorted(types.items())),
        "regions": {r: t for r, t in sorted(by_region.items()) if t},
    }
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(table, indent=1, sort_keys=False) + "\n")
    tmp.replace(out)
    GpuOfferings.load.cache_clear()
    return table
