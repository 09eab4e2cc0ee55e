"""Model lifecycle: loads the manifest's champion of every model, re-pins on request
(fetch, verify, load, canary, switch atomically, unload the old), and re-runs the canary
periodically so failover health knows the model still computes what was approved. Every read of
the manifest checks its signature first (unless the runtime runs with --allow-unsigned)."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey

from .artifacts import VerificationError, fetch_verified, fetch_verified_config
from .batcher import Batcher
from .canary import Canary, CanaryError
from .errors import NotFound, ServingError
from .manifest import Manifest, ManifestError
from .metrics import Metrics, ModelStats
from .model_spec import ModelConfigError, ModelSpec, parse_model_config
from .signing import SignatureError, SignatureInfo, verify_manifest
from .sources import RepositorySource, SourceError, read_manifest_bytes, read_signature_bytes
from .torch_model import TorchModel

log = logging.getLogger("mlfleet.runtime")


class LoadRefused(Exception):
    """A version could not be loaded or failed its canary; whatever served before still serves."""


class PinConflict(Exception):
    """Another re-pin of the same model is in progress."""


@dataclass
class ServingModel:
    spec: ModelSpec
    version: str
    batcher: Batcher
    canary: Canary
    checksum_verified: bool
    approved_by: str
    stats: ModelStats = field(repr=False)
    canary_passed_at: float | None = None  # wall clock, seconds
    canary_failure: str | None = None


class ModelManager:
    def __init__(self, source: RepositorySource, metrics: Metrics, *,
                 manifest_public_key: EllipticCurvePublicKey | None, canary_interval_s: float = 30.0):
        """`manifest_public_key`: the key manifest.json.sig must verify against; None (given on
        purpose, --allow-unsigned) loads manifests unverified."""
        self.source = source
        self.metrics = metrics
        self.canary_interval_s = canary_interval_s
        self.manifest_public_key = manifest_public_key
        self.manifest: Manifest | None = None
        self.signature: SignatureInfo | None = None  # of the manifest in use; None when unverified
        self.active: dict[str, ServingModel] = {}
        self.previous: dict[str, str | None] = {}
        # (model, version) of every version that has served since start: whose statistics are reported
        self.served: set[tuple[str, str]] = set()
        # models an operator unloaded (model repository control): they do not count against
        # readiness, but failover health reports them (the region no longer serves the manifest)
        self.unloaded: set[str] = set()
        self._pin_locks: dict[str, asyncio.Lock] = {}
        self._canary_task: asyncio.Task | None = None

    # -- startup and shutdown ------------------------------------------------------------------
    async def start(self) -> None:
        """Load every model's champion; raises LoadRefused naming the first failure."""
        manifest, self.signature = await asyncio.to_thread(self._read_manifest_and_signature)
        self.manifest = manifest
        for model, entry in manifest.models.items():
            self.active[model] = await self._load(model, entry.champion, manifest)
            self.previous[model] = None
            self.served.add((model, entry.champion))
            log.info("serving %s version %s (champion, approved by %s)", model, entry.champion,
                     self.active[model].approved_by)
        self._canary_task = asyncio.get_running_loop().create_task(self._canary_loop())

    async def close(self) -> None:
        if self._canary_task:
            self._canary_task.cancel()
        for serving in list(self.active.values()):
            await serving.batcher.close()

    @property
    def all_loaded(self) -> bool:
        return self.manifest is not None and all(m in self.active or m in self.unloaded
                                                 for m in self.manifest.models)

    # -- lookups for the front ends ------------------------------------------------------------
    def resolve(self, model: str, version: str | None = None) -> ServingModel:
        serving = self.active.get(model)
        if serving is None:
            raise NotFound(f"model {model!r} is unloaded" if model in self.unloaded else f"unknown model {model!r}")
        if version and version != serving.version:
            raise NotFound(f"model {model!r} version {version!r} is not loaded (serving version {serving.version})")
        return serving

    def champion(self, model: str) -> str | None:
        entry = self.manifest.models.get(model) if self.manifest else None
        return entry.champion if entry else None

    # -- re-pinning ----------------------------------------------------------------------------
    async def pin(self, model: str, version: str, *, reload_manifest: bool = False) -> tuple[str, str]:
        """Serve `version` of `model`. Returns (version, previous). Raises NotFound for a model or
        version the manifest does not approve, LoadRefused when verification or the canary fails."""
        async with self._exclusive(model):
            manifest, signature = self.manifest, self.signature
            if reload_manifest:
                try:
                    manifest, signature = await asyncio.to_thread(self._read_manifest_and_signature)
                except LoadRefused as exc:
                    raise LoadRefused(f"manifest reload refused: {exc}") from None
            entry = manifest.models.get(model) if manifest else None
            if manifest is None or entry is None or (model not in self.active and model not in self.unloaded):
                raise NotFound(f"unknown model {model!r}")
            if model in self.unloaded:
                raise PinConflict(f"model {model!r} is unloaded: load it first")
            if version not in entry.versions:
                raise NotFound(f"version {version!r} of model {model!r} is not approved in the manifest "
                               f"(approved: {sorted(entry.versions)})")
            old = self.active[model]
            self.manifest, self.signature = manifest, signature
            if old.version == version and not reload_manifest:
                return version, self.previous.get(model) or version
            fresh = await self._load(model, version, manifest)
            self.active[model] = fresh  # the atomic switch: new requests resolve to the new version
            self.served.add((model, version))
            self.previous[model] = old.version
            log.info("re-pinned %s from version %s to %s", model, old.version, version)
            await old.batcher.close()  # requests already queued on the old version finish there
            return version, old.version

    # -- model repository control --------------------------------------------------------------
    async def load(self, model: str) -> str:
        """Serve the manifest's champion of `model`: load it (verified, canary) when the model is
        unloaded, switch back to it when another version is pinned. Returns the version."""
        async with self._exclusive(model):
            entry = self.manifest.models.get(model) if self.manifest else None
            if self.manifest is None or entry is None:
                raise NotFound(f"unknown model {model!r}: not in the manifest")
            old = self.active.get(model)
            if old is not None and old.version == entry.champion:
                return entry.champion
            self.active[model] = await self._load(model, entry.champion, self.manifest)
            self.served.add((model, entry.champion))
            self.unloaded.discard(model)
            log.info("loaded %s version %s (champion)", model, entry.champion)
            if old is not None:
                self.previous[model] = old.version
                await old.batcher.close()
            return entry.champion

    async def unload(self, model: str) -> None:
        """Stop serving `model`: new requests are not found at once, queued ones finish."""
        async with self._exclusive(model):
            if self.manifest is None or model not in self.manifest.models:
                raise NotFound(f"unknown model {model!r}: not in the manifest")
            serving = self.active.pop(model, None)
            self.unloaded.add(model)
            if serving is not None:
                log.info("unloaded %s version %s", model, serving.version)
                await serving.batcher.close()

    # -- internals -----------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _exclusive(self, model: str) -> AsyncIterator[None]:
        """One re-pin, load or unload of a model at a time; a second one is refused, not queued."""
        lock = self._pin_locks.setdefault(model, asyncio.Lock())
        if lock.locked():
            raise PinConflict(f"a re-pin, load or unload of model {model!r} is already in progress")
        async with lock:
            yield

    def _read_manifest_and_signature(self) -> tuple[Manifest, SignatureInfo | None]:
        """The manifest, parsed only after its signature verified over the bytes that are parsed."""
        try:
            manifest_bytes = read_manifest_bytes(self.source)
        except SourceError as exc:
            raise LoadRefused(f"cannot read the manifest: {exc}") from None
        signature = None
        if self.manifest_public_key is None:
            log.warning("MANIFEST SIGNATURE NOT VERIFIED (--allow-unsigned, for local development only): "
                        "this runtime serves whatever %s/manifest.json approves", self.source.location)
        else:
            try:
                signature = verify_manifest(manifest_bytes, read_signature_bytes(self.source),
                                            self.manifest_public_key)
            except SourceError as exc:
                raise LoadRefused(f"cannot read the manifest's signature: {exc}") from None
            except SignatureError as exc:
                raise LoadRefused(f"{exc}; refusing the manifest") from None
            log.info("manifest signature verified: %s by key %s", signature.algorithm, signature.key_id)
        try:
            return Manifest.load(manifest_bytes), signature
        except ManifestError as exc:
            raise LoadRefused(str(exc)) from None

    def _fetch_and_load(self, model: str, version: str, manifest: Manifest):
        verified = fetch_verified(self.source, manifest, model, version)
        spec = parse_model_config(fetch_verified_config(self.source, manifest, model), model)
        canary = Canary.parse(verified.canary_bytes, spec, f"{model}/{version}/canary.json")
        return verified, spec, canary, TorchModel.load(spec, version, verified.model_bytes)

    async def _load(self, model: str, version: str, manifest: Manifest) -> ServingModel:
        try:
            verified, spec, canary, torch_model = await asyncio.to_thread(
                self._fetch_and_load, model, version, manifest)
        except (VerificationError, SourceError, ModelConfigError, CanaryError, ValueError, KeyError) as exc:
            raise LoadRefused(str(exc).strip("'\"")) from None
        stats = self.metrics.stats(model, version)
        serving = ServingModel(spec, version, Batcher(torch_model, stats), canary, checksum_verified=True,
                               approved_by=verified.approval.approved_by, stats=stats)
        failure = await self.run_canary(serving)
        if failure:
            await serving.batcher.close()
            raise LoadRefused(f"{model} version {version}: canary failed: {failure}")
        return serving

    async def run_canary(self, serving: ServingModel) -> str | None:
        try:
            outputs = await serving.batcher.infer(serving.canary.inputs, serving.canary.rows)
            failure = serving.canary.mismatch(outputs)
        except ServingError as exc:
            failure = exc.message
        if failure:
            serving.canary_failure = failure
            log.warning("canary failed for %s version %s: %s", serving.spec.name, serving.version, failure)
        else:
            serving.canary_failure = None
            serving.canary_passed_at = time.time()
        return failure

    async def _canary_loop(self) -> None:
        while True:
            await asyncio.sleep(self.canary_interval_s)
            for serving in list(self.active.values()):
                if self.active.get(serving.spec.name) is serving:
                    await self.run_canary(serving)
