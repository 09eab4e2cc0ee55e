"""What each party may do with the models in an artifact bucket, as IAM statements the bucket grants.

The store's layout decides the statements: artifacts live under a models prefix, the champion is
the version tagged `mlfleet:stage=champion`, and `<prefix>manifest.json` pins it. So the store
(`S3ArtifactStore.grant_read_champions(...)`, or an `ArtifactBucket` named by its attributes, as
CDK's `Bucket.fromBucketAttributes`) writes them, and an identity only collects them into its
roles' policies. KMS use is allowed only through S3 in the bucket's region.
"""
from __future__ import annotations

from dataclasses import dataclass, field

STAGE_TAG = "mlfleet:stage"
CHAMPION = "champion"
MANIFEST_NAME = "manifest.json"


@dataclass
class PolicyStatements:
    """The statements of one role's inline policy, in the order they are granted."""
    statements: list[dict] = field(default_factory=list)
    """In grant order; default none."""

    def add(self, *statements: dict) -> None:
        self.statements.extend(statements)


@dataclass(frozen=True, kw_only=True)
class ArtifactBucket:
    """An artifact bucket and its key, as its grants name them."""
    bucket_name: str
    key_arn: str
    """The bucket's KMS key (S3 decrypts with it on the caller's behalf)."""
    region: str
    """The bucket's region: KMS is used through S3 there only."""

    @property
    def bucket_arn(self) -> str:
        return f"arn:aws:s3:::{self.bucket_name}"

    def models(self, models_prefix: str) -> str:
        return f"{self.bucket_arn}/{models_prefix}*"

    def manifest(self, models_prefix: str) -> str:
        return f"{self.bucket_arn}/{models_prefix}{MANIFEST_NAME}"

    def _via_s3(self) -> dict:
        return {"StringEquals": {"kms:ViaService": f"s3.{self.region}.amazonaws.com"}}

    def grant_read_champions(self, grantee: PolicyStatements, models_prefix: str) -> None:
        """Read champion-tagged artifacts and the manifest, and nothing else (serving)."""
        grantee.add({
            "Sid": "ReadChampionArtifacts", "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:GetObjectVersion"], "Resource": self.models(models_prefix),
            "Condition": {"StringEquals": {f"s3:ExistingObjectTag/{STAGE_TAG}": CHAMPION}},
        }, {
            "Sid": "ReadManifest", "Effect": "Allow", "Action": "s3:GetObject",
            "Resource": self.manifest(models_prefix),
        }, {
            "Sid": "DecryptArtifacts", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": self.key_arn,
            "Condition": self._via_s3(),
        })

    def grant_write_candidates(self, grantee: PolicyStatements, models_prefix: str) -> None:
        """Upload candidates under the prefix, but never tag one champion nor repin the manifest (training)."""
        models = self.models(models_prefix)
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
            "Resource": self.manifest(models_prefix),
        })

    def grant_approve_champions(self, grantee: PolicyStatements, models_prefix: str) -> None:
        """List and read everything under the prefix, tag a version champion, publish the manifest (review)."""
        models = self.models(models_prefix)
        grantee.add({
            "Sid": "ListModels", "Effect": "Allow", "Action": ["s3:ListBucket", "s3:ListBucketVersions"],
            "Resource": self.bucket_arn, "Condition": {"StringLike": {"s3:prefix": f"{models_prefix}*"}},
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
            "Resource": self.manifest(models_prefix),
        }, {
            "Sid": "UseArtifactKey", "Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
            "Resource": self.key_arn, "Condition": self._via_s3(),
        })
