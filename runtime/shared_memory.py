"""Triton's system shared memory extension: a client on the same host registers a POSIX shared
memory object (`shm_open` key, as `tritonclient.utils.shared_memory` creates it), then names a
region of it in an inference request instead of sending the tensor's bytes, and may ask for an
output to be written into a region instead of returned.

Every access is checked against the registered region and the object's current size, and goes
through `os.pread` / `os.pwrite` on the object's descriptor rather than a mapping: a client that
truncates its object after registering gets a short read (a 400), where a mapping would take the
process down with SIGBUS. Registration, lookups, reads and writes all run on the event loop (REST
and gRPC share it), so the registry needs no lock.

CUDA shared memory is not supported: its status is always empty, unregistering is a no-op, and
registering is refused with a message that says so."""
from __future__ import annotations

import ipaddress
import os
import stat
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from .errors import BadRequest, Conflict, NotFound

SYSTEM_SHARED_MEMORY = "system_shared_memory"  # Triton's extension name
SHM_ROOT = "/dev/shm"  # where shm_open keeps its objects on Linux
MAX_REGIONS = 1024  # each region holds a descriptor: bound what a client can pin open
MAX_NAME_CHARS = 255  # NAME_MAX, for region names and keys
CUDA_NOT_SUPPORTED = "CUDA shared memory is not supported by this server (system shared memory is)"

# the parameters naming a region on an input or a requested output (Triton's names)
REGION, OFFSET, BYTE_SIZE = "shared_memory_region", "shared_memory_offset", "shared_memory_byte_size"
MODES = ("auto", "on", "off")


def enabled(mode: str, host: str, management_port: int | None) -> bool:
    """Whether `--system-shared-memory MODE` serves the extension. `auto` serves it only when the
    REST and gRPC ports listen on loopback and there is no management port: a region maps this
    pod's memory, so only a client inside the pod may name one (a remote client cannot share
    memory anyway). `on` with a management port is refused: that flag says the public ports sit
    behind a load balancer."""
    if mode not in MODES:
        raise ValueError(f"--system-shared-memory must be one of {', '.join(MODES)}")
    if mode == "on" and management_port is not None:
        raise ValueError("--system-shared-memory on cannot be used with --management-port: the public "
                         "ports face the load balancer, and a region maps this pod's memory")
    if mode == "auto":
        return management_port is None and _is_loopback(host)
    return mode == "on"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class RegionStatus:
    name: str
    key: str
    offset: int
    byte_size: int


@dataclass(eq=False)
class _Region:
    status: RegionStatus
    fd: int


@dataclass(frozen=True)
class RegionRef:
    """A tensor's place in a registered region, checked against the region when it was parsed."""
    name: str
    offset: int
    byte_size: int
    region: _Region

    def parameters(self, written: int) -> dict[str, Any]:
        """The response's parameters for an output written here (`written` bytes)."""
        return {REGION: self.name, BYTE_SIZE: written, OFFSET: self.offset}


def _count(value: Any, what: str, *, positive: bool = False) -> int:
    if type(value) is not int or value < (1 if positive else 0):  # bool is not a size
        raise BadRequest(f"{what} must be a {'positive' if positive else 'non-negative'} integer, not {value!r}")
    return value


def _object_path(key: Any) -> str:
    """The file of shm_open(key): leading slashes dropped, as glibc does; anything that would name
    another folder is refused, so a key never reaches outside the shared memory folder."""
    if not isinstance(key, str) or not key:
        raise BadRequest("'key' must be a non-empty string")
    name = key.lstrip("/")
    if not name or "/" in name or "\0" in name or name in (".", "..") or len(name) > MAX_NAME_CHARS:
        raise BadRequest(f"key {key!r} is not a shared memory object name (one name, optionally after '/')")
    return os.path.join(SHM_ROOT, name)


class SharedMemoryRegistry:
    """The registered system shared memory regions, by name, shared by both front ends."""

    def __init__(self) -> None:
        self._regions: dict[str, _Region] = {}

    # -- the extension's calls --------------------------------------------------------------------
    def register(self, name: Any, key: Any, offset: Any, byte_size: Any) -> RegionStatus:
        if not isinstance(name, str) or not name or len(name) > MAX_NAME_CHARS:
            raise BadRequest(f"region name must be a non-empty string of at most {MAX_NAME_CHARS} characters")
        path = _object_path(key)
        offset = _count(offset, "'offset'")
        byte_size = _count(byte_size, "'byte_size'", positive=True)
        if name in self._regions:  # as Triton: a name is registered once, until unregistered
            raise Conflict(f"system shared memory region {name!r} is already registered")
        if len(self._regions) >= MAX_REGIONS:
            raise BadRequest(f"{MAX_REGIONS} system shared memory regions are registered; unregister one first")
        try:  # no symlinks: the object itself, never a file it points to
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise BadRequest(f"no shared memory object with key {key!r}") from None
        except OSError as exc:
            raise BadRequest(f"cannot open shared memory object {key!r}: {exc.strerror}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise BadRequest(f"key {key!r} is not a shared memory object")
            if offset + byte_size > info.st_size:
                raise BadRequest(f"region {name!r}: offset {offset} + byte_size {byte_size} runs past the end "
                                 f"of the {info.st_size}-byte shared memory object {key!r}")
        except BaseException:
            os.close(fd)
            raise
        status = RegionStatus(name, key, offset, byte_size)
        self._regions[name] = _Region(status, fd)
        return status

    def status(self, name: str | None = None) -> list[RegionStatus]:
        if not name:
            return [region.status for region in self._regions.values()]
        region = self._regions.get(name)
        if region is None:
            raise NotFound(f"no system shared memory region {name!r} is registered")
        return [region.status]

    def unregister(self, name: str | None = None) -> None:
        """One region (an unknown name is a no-op, as Triton), or every region when no name."""
        names = [name] if name else list(self._regions)
        for each in names:
            region = self._regions.pop(each, None)
            if region is not None:
                os.close(region.fd)

    def close(self) -> None:
        self.unregister()

    # -- tensors in regions -----------------------------------------------------------------------
    def reference(self, parameters: Mapping[str, Any], what: str) -> RegionRef | None:
        """The region an input or requested output names in its parameters, checked against the
        region's bounds; None when it names none."""
        name, byte_size = parameters.get(REGION), parameters.get(BYTE_SIZE)
        if name is None and byte_size is None:
            if OFFSET in parameters:
                raise BadRequest(f"{what}: {OFFSET} needs {REGION} and {BYTE_SIZE}")
            return None
        if name is None or byte_size is None:  # Triton needs both
            raise BadRequest(f"{what}: {REGION} and {BYTE_SIZE} must be given together")
        if not isinstance(name, str):
            raise BadRequest(f"{what}: {REGION} must be a string")
        region = self._regions.get(name)
        if region is None:
            raise BadRequest(f"{what}: no system shared memory region {name!r} is registered")
        offset = _count(parameters.get(OFFSET, 0), f"{what}: {OFFSET}")
        byte_size = _count(byte_size, f"{what}: {BYTE_SIZE}")
        if offset + byte_size > region.status.byte_size:
            raise BadRequest(f"{what}: offset {offset} + byte_size {byte_size} runs past the end of the "
                             f"{region.status.byte_size}-byte region {name!r}")
        return RegionRef(name, offset, byte_size, region)

    def read(self, ref: RegionRef, what: str) -> bytes:
        """A copy of the tensor's bytes: the model never sees memory the client may still change."""
        start = self._checked_start(ref, what)
        data = os.pread(ref.region.fd, ref.byte_size, start)
        if len(data) != ref.byte_size:
            raise BadRequest(f"{what}: the shared memory object of region {ref.name!r} is shorter than the region")
        return data

    def write(self, ref: RegionRef, data: bytes | memoryview, what: str) -> None:
        if len(data) > ref.byte_size:
            raise BadRequest(f"{what}: needs {len(data)} bytes, {BYTE_SIZE} of region {ref.name!r} is "
                             f"{ref.byte_size}")
        start = self._checked_start(ref, what)
        if os.pwrite(ref.region.fd, data, start) != len(data):
            raise BadRequest(f"{what}: could not write all of it into region {ref.name!r}")

    def _checked_start(self, ref: RegionRef, what: str) -> int:
        """Where the tensor starts in the object. The region must still be the one the request
        named (not unregistered meanwhile: its descriptor may be closed and reused), and the object
        must still cover it."""
        if self._regions.get(ref.name) is not ref.region:
            raise BadRequest(f"{what}: region {ref.name!r} was unregistered while the request ran")
        start = ref.region.status.offset + ref.offset
        if start + ref.byte_size > os.fstat(ref.region.fd).st_size:
            raise BadRequest(f"{what}: the shared memory object of region {ref.name!r} is shorter than the region")
        return start


def input_from_region(registry: SharedMemoryRegistry | None, parameters: Mapping[str, Any], name: Any,
                      *, has_data: bool) -> bytes | None:
    """The bytes of an input that names a region, None when it names none."""
    if registry is None:
        if REGION in parameters:
            raise BadRequest(f"input {name!r}: system shared memory is not enabled on this server")
        return None
    what = f"input {name!r}"
    ref = registry.reference(parameters, what)
    if ref is None:
        return None
    if has_data:  # which one would win is a guess: refuse, as Triton does
        raise BadRequest(f"{what}: data must not be given with {REGION}")
    return registry.read(ref, what)


def output_regions(registry: SharedMemoryRegistry | None,
                   outputs: Iterable[tuple[Any, Mapping[str, Any]]]) -> list[RegionRef | None] | None:
    """The region of each requested output (name, parameters), None for those returned in the
    response; None when no output names one."""
    refs: list[RegionRef | None] = []
    for name, parameters in outputs:
        if registry is None:
            if REGION in parameters:
                raise BadRequest(f"output {name!r}: system shared memory is not enabled on this server")
            refs.append(None)
        else:
            refs.append(registry.reference(parameters, f"output {name!r}"))
    return refs if any(r is not None for r in refs) else None


def write_output(registry: SharedMemoryRegistry, ref: RegionRef, name: str, raw: bytes) -> dict[str, Any]:
    """Writes an output's row-major bytes into its region; the response's parameters for it."""
    registry.write(ref, raw, f"output {name!r}")
    return ref.parameters(len(raw))


def status_json(statuses: list[RegionStatus]) -> list[dict[str, Any]]:
    return [{"name": s.name, "key": s.key, "offset": s.offset, "byte_size": s.byte_size} for s in statuses]


def register_body(document: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """key, offset (default 0) and byte_size of a REST register request."""
    if "key" not in document or "byte_size" not in document:
        raise BadRequest("register needs 'key' and 'byte_size' (and optionally 'offset')")
    return document["key"], document.get("offset", 0), document["byte_size"]


def rest_regions(registry: SharedMemoryRegistry | None, header: dict, request: Any) -> list[RegionRef | None] | None:
    """REST: reads the inputs of a parsed request (its JSON `header`, whose shape parse_request has
    checked) that name a region into their `raw`, and returns the region of each requested output."""
    for entry, tensor in zip(header["inputs"], request.inputs, strict=True):
        parameters = entry.get("parameters")
        if not parameters or not _names_region(parameters):  # the common case: data in the request
            continue
        raw = input_from_region(registry, parameters, tensor.name,
                                has_data=tensor.data is not None or "binary_data_size" in parameters)
        if raw is not None:
            tensor.raw = raw
    wanted = header.get("outputs")
    if wanted is None or not any(_names_region(o.get("parameters") or {}) for o in wanted):
        return None
    return output_regions(registry, ((o.get("name"), o.get("parameters") or {}) for o in wanted))


def _names_region(parameters: Mapping[str, Any]) -> bool:
    """Whether the parameters say anything about shared memory (then they are checked in full)."""
    return REGION in parameters or BYTE_SIZE in parameters or OFFSET in parameters
