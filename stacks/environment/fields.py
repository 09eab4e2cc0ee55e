"""The field types every part of the environment model shares: the strict base model, durations
and private CIDR ranges."""
from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

NAME_PATTERN = r"^[a-z][a-z0-9-]{0,19}$"
"""Environment and pool names: short, because cloud resource names are derived from them."""

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h)?\s*$")
_UNIT_SECONDS = {None: 1, "s": 1, "m": 60, "h": 3600}


class Model(BaseModel):
    # Unknown keys are typos until proven otherwise.
    model_config = ConfigDict(extra="forbid", frozen=True)


def _seconds(value: object) -> object:
    """Durations are seconds (int) or strings with a unit: '90s', '15m', '1h'."""
    if isinstance(value, str):
        match = _DURATION.fullmatch(value)
        if not match:
            raise ValueError(f"{value!r} is not a duration like '90s', '15m' or '1h'")
        return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    return value


# Editors see what the files say: a number of seconds, or a string with a unit.
Seconds = Annotated[int, BeforeValidator(_seconds), Field(gt=0), WithJsonSchema({"anyOf": [
    {"type": "integer", "exclusiveMinimum": 0},
    {"type": "string", "pattern": _DURATION.pattern}]})]


def private_cidr(value: str, smallest: int, purpose: str, largest: int = 8) -> str:
    """`value` as a normalized private network of prefix length `largest` to `smallest`."""
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid network CIDR ({exc})") from None
    if not network.is_private:
        raise ValueError(f"{value} is not a private range")
    if not largest <= network.prefixlen <= smallest:
        raise ValueError(f"{value}: use a /{largest} to /{smallest}, room for {purpose}")
    return str(network)


def _vpc_cidr(value: str) -> str:
    return private_cidr(value, 20, "three AZs of GPU nodes and pods", largest=16)


Cidr = Annotated[str, AfterValidator(_vpc_cidr)]
NodeCidr = Annotated[str, AfterValidator(lambda v: private_cidr(v, 24, "the nodes of a GKE region"))]
PodsCidr = Annotated[str, AfterValidator(lambda v: private_cidr(v, 21, "pods (GKE gives each node a /24)"))]
ServicesCidr = Annotated[str, AfterValidator(lambda v: private_cidr(v, 27, "Kubernetes Services"))]
ControlPlaneCidr = Annotated[str, AfterValidator(lambda v: private_cidr(v, 28, "the GKE control plane"))]
ProxyCidr = Annotated[str, AfterValidator(lambda v: private_cidr(v, 26, "a regional load balancer's proxies"))]
PrivateCidr = Annotated[str, AfterValidator(lambda v: private_cidr(v, 32, "one or more addresses"))]
ServicesAccessCidr = Annotated[str, AfterValidator(lambda v: private_cidr(v, 24, "private services access"))]
