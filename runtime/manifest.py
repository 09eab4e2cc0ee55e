"""The champion manifest: which versions of each model are approved, the sha256 of every file
of a version, who approved it and when, and which version is the champion.

It lives as ``manifest.json`` at the root of a model repository, signed by the detached
``manifest.json.sig`` beside it (signing.py). The runtime loads nothing that the manifest does not
list with a matching checksum, a model's ``config.pbtxt`` included."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

MANIFEST_FILE = "manifest.json"
CANARY_FILE = "canary.json"
MODEL_FILE = "model.pt"
CONFIG_FILE = "config.pbtxt"  # per model folder, Triton's layout

Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class ManifestError(ValueError):
    """The manifest cannot be read or is not valid."""


class ApprovedVersion(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    files: dict[str, Sha256Hex]
    approved_by: str = Field(min_length=1)
    approved_at: datetime

    @field_validator("files")
    @classmethod
    def _files_are_safe_relative_paths(cls, files: dict[str, str]) -> dict[str, str]:
        for name in files:
            parts = Path(name).parts
            if not parts or name.startswith("/") or "\\" in name or any(p in ("..", ".") for p in parts):
                raise ValueError(f"file {name!r} must be a relative path inside the version folder")
        for required in (MODEL_FILE, CANARY_FILE):
            if required not in files:
                raise ValueError(f"{required} must be listed with its sha256")
        return files

    @field_validator("approved_at")
    @classmethod
    def _utc(cls, when: datetime) -> datetime:
        offset = when.utcoffset()
        if offset is None or offset.total_seconds() != 0:
            raise ValueError("approved_at must be an ISO-8601 UTC time (ending in Z or +00:00)")
        return when


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    champion: str
    versions: dict[str, ApprovedVersion]
    # sha256 of <model>/config.pbtxt: it decides batching, shapes and datatypes, so it is approved
    # with the versions; required when the model has one (the runtime refuses an unlisted config)
    config_sha256: Sha256Hex | None = None

    @field_validator("versions")
    @classmethod
    def _numeric_versions(cls, versions: dict[str, ApprovedVersion]) -> dict[str, ApprovedVersion]:
        if not versions:
            raise ValueError("at least one approved version is required")
        for version in versions:
            # Triton's repository layout names version folders by positive integers.
            if not version.isdigit() or int(version) < 1:
                raise ValueError(f"version {version!r} must be a positive integer")
        return versions

    @model_validator(mode="after")
    def _champion_is_approved(self) -> "ModelEntry":
        if self.champion not in self.versions:
            raise ValueError(
                f"champion {self.champion!r} is not an approved version (approved: {sorted(self.versions)})")
        return self


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    models: dict[str, ModelEntry]

    @field_validator("models")
    @classmethod
    def _model_names(cls, models: dict[str, ModelEntry]) -> dict[str, ModelEntry]:
        for name in models:
            if not name or "/" in name or name in (".", "..") or name.startswith("."):
                raise ValueError(f"model name {name!r} must be a plain folder name")
        return models

    @classmethod
    def load(cls, source: str | Path | bytes) -> "Manifest":
        """Parse a manifest from a file path or raw bytes; ManifestError names what is wrong."""
        where = "manifest"
        if isinstance(source, (str, Path)):
            where = str(source)
            try:
                source = Path(source).read_bytes()
            except OSError as exc:
                raise ManifestError(f"{where}: cannot read: {exc.strerror or exc}") from None
        try:
            data = json.loads(source)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ManifestError(f"{where}: not valid JSON: {exc}") from None
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            location = ".".join(str(part) for part in first["loc"]) or "(root)"
            more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
            raise ManifestError(f"{where}: {location}: {first['msg']}{more}") from None

    def entry(self, model: str) -> ModelEntry:
        try:
            return self.models[model]
        except KeyError:
            raise KeyError(f"model {model!r} is not in the manifest") from None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
