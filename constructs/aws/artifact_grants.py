"""What each party may do with the models in an artifact bucket, as IAM statements the bucket grants.

The store's layout decides the statements: artifacts live under a models prefix, the champion is
the version tagged `mlfleet:stage=champion`, and `<prefix>manifest.json` pins it. So the bucket
writes them: an `S3ArtifactStore` grants on its own bucket (`store.grant_read_champions(grantee)`,
delegating to its `artifact_bucket`), and a bucket known only by its derived names is named by
`ArtifactBucket.from_attributes(...)`, as CDK's `Bucket.fromBucketAttributes`. An identity takes
either (`ArtifactGrants`) and only collects the statements into its roles' policies. KMS use is
allowed only through S3 in the bucket's region.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from cdktn import Token

from mlfleet.constructs.validation import OBJECT_PREFIX, REGION, S3_BUCKET_NAME, require

if TYPE_CHECKING:
    from constructs import Construct

STAGE_TAG = "mlfleet:stage"
CHAMPION = "champion"
MANIFEST_NAME = "manifest.json"
DEFAULT_MODELS_PREFIX = "models/"


@dataclass
class PolicyStatements:
    """The statements of one role's inline policy, in the order they are granted."""
    statements: list[dict] = field(default_factory=list)
    """In grant order; default none."""

    def add(self, *statements: dict) -> None:
        self.statements.extend(statements)


class ArtifactGrants(Protocol):
    """What an identity grants its roles on: an `S3ArtifactStore`, or an `ArtifactBucket`."""
    @property
    def manifest_key(self) -> str: ...
    def grant_read_champions(self, grantee: PolicyStatements) -> None: ...
    def grant_write_candidates(self, grantee: PolicyStatements) -> None: ...
    def grant_approve_champions(self, grantee: PolicyStatements) -> None: ...


@dataclass(frozen=True, kw_only=True)
class ArtifactBucket:
    """An artifact bucket, its key and its models prefix, as its grants name them.

    `S3ArtifactStore` makes one for the bucket it creates (its props are validated there); a
    bucket known only by its derived names comes from `from_attributes`, which validates them.
    """
    bucket_name: str
    key_arn: str
    """The bucket's KMS key (S3 decrypts with it on the caller's behalf)."""
    region: str
    """The bucket's region: KMS is used through S3 there only."""
    models_prefix: str = DEFAULT_MODELS_PREFIX
    """Where artifacts and the manifest live in the bucket; default `models/`."""

    @classmethod
    def from_attributes(cls, scope: Construct, id_: str, *, bucket_name: str, key_arn: str, region: str,
                        models_prefix: str = DEFAULT_MODELS_PREFIX) -> ArtifactBucket:
        """A bucket another stack creates, named by its deterministic attributes (no cross-stack
        reference); an invalid attribute is reported as `<scope path>/<id_>: <attribute>: <reason>`."""
        where = f"{scope.node.path}/{id_}" if scope.node.path else id_
        require(bool(REGION.fullmatch(region)), where, "region", f"{region!r} is not an AWS region name")
        require(bool(S3_BUCKET_NAME.fullmatch(bucket_name)), where, "bucket_name",
                f"{bucket_name!r} is not a valid S3 bucket name")
        require(Token.is_unresolved(key_arn) or key_arn.startswith(f"arn:aws:kms:{region}:"),
                where, "key_arn", f"{key_arn!r} is not a KMS key ARN in {region}")
        require(bool(OBJECT_PREFIX.fullmatch(models_prefix)), where, "models_prefix",
                f"{models_prefix!r} must be a relative key prefix ending in '/', e.g. 'models/'")
        return cls(bucket_name=bucket_name, key_arn=key_arn, region=region, models_prefix=models_prefix)

    @property
    def bucket_arn(self) -> str:
        return f"arn:aws:s3:::{self.bucket_name}"

    @property
    def manifest_key(self) -> str:
        """The manifest's object key, `<models_prefix>manifest.json`."""
        return f"{self.models_prefix}{MANIFEST_NAME}"

    def _models(self) -> str:
        return f"{self.bucket_arn}/{self.models_prefix}*"

    def _manifest(self) -> str:
        return f"{self.bucket_arn}/{self.manifest_key}"

    def _via_s3(self) -> dict:
        return {"StringEquals": {"kms:ViaService": f"s3.{self.region}.amazonaws.com"}}

    def grant_read_champions(self, grantee: PolicyStatements) -> None:
        """Read champion-tagged artifacts and the manifest, and nothing else (serving)."""
        grantee.add({
            "Sid": "ReadChampionArtifacts", "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:GetObjectVersion"], "Resource": self._models(),
            "Condition": {"StringEquals": {f"s3:ExistingObjectTag/{STAGE_TAG}": CHAMPION}},
        }, {
            "Sid": "ReadManifest", "Effect": "Allow", "Action": "s3:GetObject",
            "Resource": self._manifest(),
        }, {
            "Sid": "DecryptArtifacts", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": self.key_arn,
            "Condition": self._via_s3(),
        })

    def grant_write_candidates(self, grantee: PolicyStatements) -> None:
        """Upload candidates under the prefix, but never tag one champion nor repin the manifest (training)."""
        models = self._models()
        grantee.add({
            "Sid": "WriteCandidates", "Effect": "Allow",
            # Multipart uploads of large artifacts need to be abortable.
            "Action": ["s3:AbortMultipartUpload", "s3:PutObject"], "Resource": models,
        }, {
            "Sid": "EncryptUploads", "Effect": "Allow",
            # Multipart uploads under SSE-KMS decrypt the data key to assemble the parts.
            "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": self.key_arn, "Condition": self._via_s3(),
        }, {
            "Sid": "DenyChampionTag", "Effect": "Deny",
            "Action": ["s3:PutObject", "s3:PutObjectTagging", "s3:PutObjectVersionTagging"], "Resource": models,
            "Condition": {"StringEquals": {f"s3:RequestObjectTag/{STAGE_TAG}": CHAMPION}},
        }, {
            # The manifest lives under the prefix: an explicit deny keeps training from repinning it.
            "Sid": "DenyManifestWrites", "Effect": "Deny", "Action": "s3:PutObject",
            "Resource": self._manifest(),
        })

    def grant_approve_champions(self, grantee: PolicyStatements) -> None:
        """List and read everything under the prefix, tag a version champion, publish the manifest (review)."""
        models = self._models()
        grantee.add({
            "Sid": "ListModels", "Effect": "Allow", "Action": ["s3:ListBucket", "s3:ListBucketVersions"],
            "Resource": self.bucket_arn, "Condition": {"StringLike": {"s3:prefix": f"{self.models_prefix}*"}},
        }, {
            "Sid": "ReadModels", "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:GetObjectTagging", "s3:GetObjectVersion",
                       "s3:GetObjectVersionTagging"],
            "Resource": models,
        }, {
            "Sid": "ApproveChampion", "Effect": "Allow",
            "Action": ["s3:PutObjectTagging", "s3:PutObjectVersionTagging"], "Resource": models,
        }, {
            "Sid": "PublishManifest", "Effect": "Allow", "Action": "s3:PutObject",
            "Resource": self._manifest(),
        }, {
            "Sid": "UseArtifactKey", "Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
            "Resource": self.key_arn, "Condition": self._via_s3(),
        })
