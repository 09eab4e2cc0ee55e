"""Fetches one approved model version from its source and verifies every file against the
manifest before anything is deserialized."""
from __future__ import annotations

from dataclasses import dataclass

from .manifest import CANARY_FILE, MODEL_FILE, ApprovedVersion, Manifest, sha256_bytes
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
