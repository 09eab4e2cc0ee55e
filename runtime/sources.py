"""Where a model repository lives: a local folder, an S3 prefix or a Cloud Storage prefix. A
source hands out bytes; verification against the manifest happens on those bytes, so what is
hashed is what is loaded."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from .manifest import MANIFEST_FILE
from .signing import SIGNATURE_FILE


class SourceError(OSError):
    """A file of the repository cannot be read from its source."""


class MissingFile(SourceError):
    """The file is not in the repository (as opposed to a source that cannot be read)."""


class RepositorySource(Protocol):
    location: str

    def read(self, relative_path: str) -> bytes:
        """Bytes of one file, by its path relative to the repository root."""


class LocalSource:
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.location = str(self.root)
        if not self.root.is_dir():
            raise SourceError(f"model repository {self.location} is not a folder")

    def read(self, relative_path: str) -> bytes:
        path = (self.root / relative_path).resolve()
        if not path.is_relative_to(self.root):
            raise SourceError(f"{relative_path}: escapes the model repository")
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise MissingFile(f"{self.location}/{relative_path}: {exc.strerror or exc}") from None
        except OSError as exc:
            raise SourceError(f"{self.location}/{relative_path}: {exc.strerror or exc}") from None


class S3Source:
    """s3://bucket/prefix/. boto3 reads AWS_ENDPOINT_URL and AWS_REGION from the environment."""

    def __init__(self, url: str):
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise SourceError(f"{url!r} is not an s3://bucket/prefix URL")
        import boto3
        from botocore.config import Config

        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.location = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        self._s3 = boto3.client("s3", region_name=region,
                                config=Config(retries={"max_attempts": 3, "mode": "standard"}))

    def read(self, relative_path: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        key = f"{self.prefix}/{relative_path}" if self.prefix else relative_path
        try:
            return self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "error")
            if code in ("NoSuchKey", "404"):
                raise MissingFile(f"s3://{self.bucket}/{key}: {code}") from None
            raise SourceError(f"s3://{self.bucket}/{key}: {code}") from None
        except BotoCoreError as exc:
            raise SourceError(f"s3://{self.bucket}/{key}: {exc}") from None


class GcsSource:
    """gs://bucket/prefix/, through google-cloud-storage: on GKE with the pod's Workload Identity
    (application default credentials); STORAGE_EMULATOR_HOST points it at an emulator."""

    def __init__(self, url: str):
        parsed = urlparse(url)
        if parsed.scheme != "gs" or not parsed.netloc:
            raise SourceError(f"{url!r} is not a gs://bucket/prefix URL")
        import google.cloud.storage as storage
        from google.auth.exceptions import DefaultCredentialsError

        self.prefix = parsed.path.strip("/")
        self.location = f"gs://{parsed.netloc}/{self.prefix}".rstrip("/")
        try:
            self._bucket = storage.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT")).bucket(parsed.netloc)
        except DefaultCredentialsError as exc:
            raise SourceError(f"{self.location}: no Google credentials ({exc})") from None

    def read(self, relative_path: str) -> bytes:
        from google.api_core.exceptions import GoogleAPIError, NotFound
        from google.auth.exceptions import GoogleAuthError

        name = f"{self.prefix}/{relative_path}" if self.prefix else relative_path
        try:
            # Cloud Storage sends the object's CRC32C and MD5; the download checks them.
            return self._bucket.blob(name).download_as_bytes(timeout=30)
        except NotFound:
            raise MissingFile(f"gs://{self._bucket.name}/{name}: not found") from None
        except (GoogleAPIError, GoogleAuthError) as exc:
            raise SourceError(f"gs://{self._bucket.name}/{name}: {exc}") from None


def open_source(location: str) -> RepositorySource:
    if location.startswith("s3://"):
        return S3Source(location)
    if location.startswith("gs://"):
        return GcsSource(location)
    return LocalSource(location)


def read_manifest_bytes(source: RepositorySource) -> bytes:
    return source.read(MANIFEST_FILE)


def read_signature_bytes(source: RepositorySource) -> bytes | None:
    """manifest.json.sig from the same source as the manifest; None when there is none."""
    try:
        return source.read(SIGNATURE_FILE)
    except MissingFile:
        return None
