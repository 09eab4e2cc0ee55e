"""Fetches one approved model version, and its model's config.pbtxt, from its source and verifies
every file against the manifest before anything is deserialized."""
from __future__ import annotations

from dataclasses import dataclass

from .manifest import CANARY_FILE, CONFIG_FILE, MODEL_FILE, ApprovedVersion, Manifest, sha256_bytes
from .sources import RepositorySource


class VerificationError(ValueError):
    """A file of a model version does not match the manifest."""


@dataclass(frozen=True)
class VerifiedVersion:
    model: str
    version: str
    approval: ApprovedVersion
    files: dict[str, bytes]  # relative path -> verified bytes

    @property
    def model_bytes(self) -> bytes:
        return self.files[MODEL_FILE]

    @property
    def canary_bytes(self) -> bytes:
        return self.files[CANARY_FILE]


def fetch_verified(source: RepositorySource, manifest: Manifest, model: str, version: str) -> VerifiedVersion:
    entry = manifest.entry(model)
    approval = entry.versions.get(version)
    if approval is None:
        raise KeyError(f"version {version!r} of model {model!r} is not approved in the manifest "
                       f"(approved: {sorted(entry.versions)})")
    files = {}
    for relative, expected in approval.files.items():
        data = source.read(f"{model}/{version}/{relative}")
        actual = sha256_bytes(data)
        if actual != expected:
            raise VerificationError(f"{model}/{version}/{relative}: sha256 {actual} does not match "
                                    f"the manifest's {expected}; refusing to load")
        files[relative] = data
    return VerifiedVersion(model, version, approval, files)


def fetch_verified_config(source: RepositorySource, manifest: Manifest, model: str) -> bytes:
    """`<model>/config.pbtxt`, only when the manifest lists it with a matching sha256: a changed
    max_batch_size, shape or datatype is an unapproved change like a changed model.pt."""
    expected = manifest.entry(model).config_sha256
    data = source.read(f"{model}/{CONFIG_FILE}")
    if expected is None:
        raise VerificationError(f"{model}/{CONFIG_FILE} is not listed in the manifest (models.{model}.config_sha256); "
                                "refusing to load")
    actual = sha256_bytes(data)
    if actual != expected:
        raise VerificationError(f"{model}/{CONFIG_FILE}: sha256 {actual} does not match the manifest's "
                                f"config_sha256 {expected}; refusing to load")
    return data
