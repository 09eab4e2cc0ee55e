"""Standby sizing shared by every GPU pool, on any cloud.

A standby pool runs `warm_size` nodes until a failover raises it to `failover_size` (default:
the pool's serving minimum). Both sizes are Terraform outputs named after the pool, so the DR
runbooks read them from the region's own state.
"""
from __future__ import annotations

from dataclasses import dataclass

from cdktn import TerraformOutput
from constructs import Construct

from mlfleet.constructs.validation import require


@dataclass(frozen=True)
class PoolSizes:
    scaling_minimum: int
    """The size Terraform creates the pool at, and the in-service floor to alarm below."""
    warm_size: int | None
    failover_size: int | None


def pool_sizes(*, standby: bool, min_size: int, warm_size: int, failover_size: int | None) -> PoolSizes:
    if not standby:
        return PoolSizes(scaling_minimum=min_size, warm_size=None, failover_size=None)
    return PoolSizes(scaling_minimum=warm_size, warm_size=warm_size,
                     failover_size=failover_size if failover_size is not None else min_size)


def validate_standby_sizes(scope: Construct, *, min_size: int, max_size: int, warm_size: int,
                           failover_size: int | None) -> None:
    require(0 <= warm_size <= min_size, scope, "warm_size", f"{warm_size} is not between 0 and min_size ({min_size})")
    if failover_size is not None:
        require(min_size <= failover_size <= max_size, scope, "failover_size",
                f"{failover_size} is not between min_size ({min_size}) and max_size ({max_size}): a failover "
                "restores at least the pool's serving minimum")


def add_pool_outputs(scope: Construct, pool: str, name: tuple[str, str, str], sizes: PoolSizes) -> None:
    """`<pool>_<name>` and, for a standby, `<pool>_warm_size` and `<pool>_failover_size`."""
    outputs: list[tuple[str, str | int | None, str]] = [name]
    if sizes.warm_size is not None:
        outputs += [("warm_size", sizes.warm_size, "Nodes the standby pool keeps running before a failover"),
                    ("failover_size", sizes.failover_size, "Nodes a failover scales the standby pool to")]
    prefix = pool.replace("-", "_")
    for suffix, value, description in outputs:
        output_id = f"{prefix}_{suffix}"
        TerraformOutput(scope, output_id, value=value, description=description).override_logical_id(output_id)
