"""The tests' manifest signing key pair (fixture `manifest_key` in tests/conftest.py): generated
once per session, its public half written where only that session's runtimes read it."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mlfleet.runtime.manifest import CONFIG_FILE, MANIFEST_FILE, sha256_file
from mlfleet.runtime.signing import LocalSigningKey


@dataclass(frozen=True)
class ManifestKeyPair:
    signing_key: LocalSigningKey  # write_example_repository(signing_key=...), .sign_file(manifest)
    public_key_path: Path          # RuntimeProcess(manifest_public_key=...), --manifest-public-key


def generate_key_pair(folder: Path, key_id: str = "tests-session-key") -> ManifestKeyPair:
    signing_key = LocalSigningKey.generate(key_id)
    public_key_path = folder / "manifest-public-key.pem"
    public_key_path.write_bytes(signing_key.public_key_pem())
    return ManifestKeyPair(signing_key, public_key_path)


def edit_manifest(root: Path, signing_key: LocalSigningKey, edit: Callable[[dict], None]) -> None:
    """Change `root`/manifest.json as a review would (`edit` changes the document in place) and
    sign what was written."""
    path = root / MANIFEST_FILE
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document))
    signing_key.sign_file(path)


def approve_config(root: Path, model: str, signing_key: LocalSigningKey) -> None:
    """List the current `root`/`model`/config.pbtxt in the manifest and sign it (an approved change)."""
    digest = sha256_file(root / model / CONFIG_FILE)
    edit_manifest(root, signing_key, lambda document: document["models"][model].update(config_sha256=digest))
