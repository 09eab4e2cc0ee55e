"""Where each NVIDIA accelerator type is offered on Google Cloud, from a table shipped in the
repository: the Google counterpart of `offerings.GpuOfferings`.

The table carries its date and source. It lists each accelerator type (its description and the
most GPUs one VM takes) and, for each zone, the accelerator types offered there. GKE GPU pools
place their nodes in the zones of their region that offer the pool's accelerator.
`mlfleet capacity refresh --cloud gcp` rebuilds it from Compute Engine's aggregated list of
accelerator types (google-cloud-compute, REST), which a project sees as its zones offer them.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from mlfleet.stacks.environment.errors import MlfleetError

GCP_TABLE = Path(__file__).resolve().parent / "data" / "gcp_accelerator_offerings.json"


def _region_of(zone: str) -> str:
    return zone.rsplit("-", 1)[0]


@dataclass(frozen=True)
class AcceleratorType:
    name: str
    description: str
    max_per_instance: int


@dataclass(frozen=True)
class GcpAcceleratorOfferings:
    generated_at: str
    source: str
    accelerator_types: dict[str, AcceleratorType]
    zones: dict[str, frozenset[str]]

    @staticmethod
    @lru_cache(maxsize=4)
    def load(path: Path = GCP_TABLE) -> GcpAcceleratorOfferings:
        raw = json.loads(path.read_text())
        return GcpAcceleratorOfferings(
            generated_at=raw["generated_at"],
            source=raw["source"],
            accelerator_types={n: AcceleratorType(name=n, **v) for n, v in raw["accelerator_types"].items()},
            zones={z: frozenset(types) for z, types in raw["zones"].items()},
        )

    def is_accelerator(self, accelerator_type: str) -> bool:
        return accelerator_type in self.accelerator_types

    def zones_offering(self, accelerator_type: str, region: str) -> tuple[str, ...]:
        """The zones of `region` that offer `accelerator_type`, in name order."""
        return tuple(sorted(z for z, types in self.zones.items()
                            if _region_of(z) == region and accelerator_type in types))

    def regions(self) -> frozenset[str]:
        return frozenset(_region_of(z) for z in self.zones)

    def max_per_instance(self, accelerator_type: str) -> int:
        return self.accelerator_types[accelerator_type].max_per_instance


class RefreshFailed(MlfleetError):
    """Google's answer could not be turned into a whole table: nothing was written."""
    exit_code = 1


def accelerator_types_client(endpoint: str | None = None):
    """The Compute client over REST: Google's endpoint with the default credentials, or
    `endpoint` (a local fake, an emulator) without any."""
    from google.api_core.client_options import ClientOptions
    from google.cloud import compute_v1

    if endpoint:
        from google.auth.credentials import AnonymousCredentials

        return compute_v1.AcceleratorTypesClient(credentials=AnonymousCredentials(), transport="rest",
                                                 client_options=ClientOptions(api_endpoint=endpoint))
    import google.auth

    credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/compute.readonly"])
    return compute_v1.AcceleratorTypesClient(credentials=credentials, transport="rest")


def dumps_table(table: dict) -> str:
    """The table as JSON, one accelerator type or zone a line, so that a refresh diffs by zone."""
    def rows(mapping: dict) -> str:
        return ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in mapping.items())

    return ("{\n"
            f' "generated_at": {json.dumps(table["generated_at"])},\n'
            f' "source": {json.dumps(table["source"], ensure_ascii=False)},\n'
            f' "accelerator_types": {{\n{rows(table["accelerator_types"])}\n }},\n'
            f' "zones": {{\n{rows(table["zones"])}\n }}\n'
            "}\n")


def refresh_gcp_table(client, project: str, regions: list[str] | None, source: str,
                      out: Path = GCP_TABLE) -> dict:
    """Rebuild the table through a compute_v1 `AcceleratorTypesClient` and write it atomically;
    returns the table. A partial answer (unreachable zones) or an unknown region writes nothing."""
    from google.api_core import exceptions, retry

    # The library's default retries a 503 for ten minutes; a person is waiting on this one.
    bounded = retry.Retry(initial=0.5, maximum=8.0, multiplier=2.0, timeout=60.0,
                          predicate=retry.if_exception_type(exceptions.ServiceUnavailable,
                                                            exceptions.DeadlineExceeded))
    pager = client.aggregated_list(request={"project": project}, retry=bounded, timeout=60.0)
    types: dict[str, dict] = {}
    by_zone: dict[str, set[str]] = {}
    unreachable: set[str] = set()
    # A zone Compute Engine could not reach comes back as a warning, not as an error.
    for page in pager.pages:
        unreachable.update(s.removeprefix("zones/") for s in page.unreachables)
        for scope, scoped in page.items.items():
            if not scope.startswith("zones/"):
                continue
            zone = scope.removeprefix("zones/")
            if "warning" in scoped and scoped.warning.code == "UNREACHABLE":
                unreachable.add(zone)
            offered = by_zone.setdefault(zone, set())
            for accelerator in scoped.accelerator_types:
                name = accelerator.name
                # Virtual-workstation variants carry a vWS licence GKE cannot attach.
                if not name.startswith("nvidia-") or name.endswith("-vws"):
                    continue
                offered.add(name)
                entry = types.setdefault(name, {"description": accelerator.description, "max_per_instance": 0})
                entry["max_per_instance"] = max(entry["max_per_instance"], accelerator.maximum_cards_per_instance)
    if regions is not None:
        wanted = set(regions)
        unknown = sorted(wanted - {_region_of(z) for z in by_zone})
        if unknown:
            raise MlfleetError(f"project {project} sees no zones in region(s) {', '.join(unknown)}; "
                               f"it sees {', '.join(sorted({_region_of(z) for z in by_zone})) or 'none'}")
        by_zone = {z: t for z, t in by_zone.items() if _region_of(z) in wanted}
        unreachable = {z for z in unreachable if _region_of(z) in wanted}
    if unreachable:
        raise RefreshFailed(f"Compute Engine could not reach zone(s) {', '.join(sorted(unreachable))}; "
                            "not writing a partial table, try again later")
    zones = {z: sorted(t) for z, t in sorted(by_zone.items()) if t}
    if not zones:
        raise RefreshFailed(f"project {project} sees no NVIDIA accelerator types"
                            + (f" in {', '.join(sorted(regions))}" if regions else "") + "; not writing an empty table")
    used = {name for names in zones.values() for name in names}
    table = {
        "generated_at": dt.date.today().isoformat(),
        "source": source,
        "accelerator_types": {n: types[n] for n in sorted(used)},
        "zones": zones,
    }
    tmp = out.with_suffix(".json.tmp")
    try:
        tmp.write_text(dumps_table(table))
        tmp.replace(out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise RefreshFailed(f"cannot write {out}: {exc.strerror or exc}") from None
    GcpAcceleratorOfferings.load.cache_clear()
    return table
