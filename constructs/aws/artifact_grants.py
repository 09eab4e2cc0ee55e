"""What each party may do with the models in an artifact bucket, as IAM statements the bucket grants.

The store's layout decides the statements. Under the models prefix a bucket has two areas:
`<prefix>candidates/`, where training uploads versions (and MLflow keeps its run artifacts), and
`<prefix>approved/`, the runtime's model repository: the approved `<model>/<version>/...` files, the
manifest `approved/manifest.json` and its detached signature `approved/manifest.json.sig`, written
by review only (it copies a candidate there and signs the manifest). Areas are key prefixes, so
every grant is a resource ARN pattern: no object tags, which a writer could set itself.

The bucket writes the statements: an `S3ArtifactStore` grants on its own bucket
(`store.grant_read_approved(grantee)`, delegating to its `artifact_bucket`), and a bucket known only
by its derived names is named by `ArtifactBucket.from_attributes(...)`, as CDK's
`Bucket.fromBucketAttributes`. An identity takes either (`ArtifactGrants`) and only collects the
statements into its roles' policies. KMS use is allowed only through S3 in the bucket's region.
The store's bucket policy also denies writes to the approved area to everyone but the review roles
(`approved_area_guard`), so an identity policy granted elsewhere cannot open it, and uploads that
would bypass the bucket's key (`encryption_guard`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from cdktn import Token

from mlfleet.constructs.validation import OBJECT_PREFIX, REGION, S3_BUCKET_NAME, require

if TYPE_CHECKING:
    from constructs import Construct

DEFAULT_MODELS_PREFIX = "models/"
# The registry's layout under the models prefix (the same names as the environment's naming module).
CANDIDATES_AREA = "candidates/"
APPROVED_AREA = "approved/"
MANIFEST_FILE = "manifest.json"
MANIFEST_SIGNATURE_FILE = "manifest.json.sig"
# What changes an object that exists: the guard denies these in the approved area.
APPROVED_WRITE_ACTIONS = ("s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObject")
# The upload's encryption headers, as bucket policy condition keys.
_SSE_HEADER = "s3:x-amz-server-side-encryption"
_SSE_KEY_HEADER = "s3:x-amz-server-side-encryption-aws-kms-key-id"


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
    def candidates_prefix(self) -> str: ...
    @property
    def approved_prefix(self) -> str: ...
    @property
    def manifest_key(self) -> str: ...
    def grant_read_approved(self, grantee: PolicyStatements) -> None: ...
    def grant_write_candidates(self, grantee: PolicyStatements) -> None: ...
    def grant_approve(self, grantee: PolicyStatements) -> None: ...


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
    """Where the candidates and approved areas live in the bucket; default `models/`."""

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
    def candidates_prefix(self) -> str:
        """`<models_prefix>candidates/`: training's uploads."""
        return f"{self.models_prefix}{CANDIDATES_AREA}"

    @property
    def approved_prefix(self) -> str:
        """`<models_prefix>approved/`: the runtime's model repository, written by review only."""
        return f"{self.models_prefix}{APPROVED_AREA}"

    @property
    def manifest_key(self) -> str:
        """The manifest's object key, `<approved_prefix>manifest.json`."""
        return f"{self.approved_prefix}{MANIFEST_FILE}"

    @property
    def manifest_signature_key(self) -> str:
        """The manifest's detached signature, `<approved_prefix>manifest.json.sig`."""
        return f"{self.approved_prefix}{MANIFEST_SIGNATURE_FILE}"

    def _objects(self, prefix: str) -> str:
        return f"{self.bucket_arn}/{prefix}*"

    def _via_s3(self) -> dict:
        return {"StringEquals": {"kms:ViaService": f"s3.{self.region}.amazonaws.com"}}

    def _list(self, sid: str, *prefixes: str) -> dict:
        patterns = [f"{p}*" for p in prefixes]
        return {"Sid": sid, "Effect": "Allow", "Action": "s3:ListBucket", "Resource": self.bucket_arn,
                "Condition": {"StringLike": {"s3:prefix": patterns if len(patterns) > 1 else patterns[0]}}}

    def grant_read_approved(self, grantee: PolicyStatements) -> None:
        """Read the approved area (manifest, signature, approved versions) and nothing else (serving).
        No list: the runtime reads the keys the manifest names."""
        grantee.add({
            "Sid": "ReadApproved", "Effect": "Allow", "Action": "s3:GetObject",
            "Resource": self._objects(self.approved_prefix),
        }, {
            "Sid": "DecryptArtifacts", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": self.key_arn,
            "Condition": self._via_s3(),
        })

    def grant_write_candidates(self, grantee: PolicyStatements) -> None:
        """Upload, read and list candidates only; never touch the approved area (training)."""
        candidates = self._objects(self.candidates_prefix)
        grantee.add({
            "Sid": "WriteCandidates", "Effect": "Allow",
            # Multipart uploads of large artifacts need to be abortable.
            "Action": ["s3:AbortMultipartUpload", "s3:PutObject"], "Resource": candidates,
        }, {
            "Sid": "ReadCandidates", "Effect": "Allow", "Action": "s3:GetObject", "Resource": candidates,
        }, self._list("ListCandidates", self.candidates_prefix), {
            "Sid": "EncryptUploads", "Effect": "Allow",
            # Multipart uploads under SSE-KMS decrypt the data key to assemble the parts.
            "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": self.key_arn, "Condition": self._via_s3(),
        }, {
            # Defence in depth beside the bucket's guard: a policy attached to the role later cannot open it.
            "Sid": "DenyApprovedWrites", "Effect": "Deny", "Action": list(APPROVED_WRITE_ACTIONS),
            "Resource": self._objects(self.approved_prefix),
        })

    def grant_approve(self, grantee: PolicyStatements) -> None:
        """Read candidates, copy a version into the approved area and publish the manifest and its
        signature there, list both areas (review). No deletes, nothing outside the two areas."""
        candidates, approved = self._objects(self.candidates_prefix), self._objects(self.approved_prefix)
        grantee.add(self._list("ListModels", self.candidates_prefix, self.approved_prefix), {
            "Sid": "ReadModels", "Effect": "Allow",
            # A promotion copies the exact versions it hashed (with their tags, if any).
            "Action": ["s3:GetObject", "s3:GetObjectTagging", "s3:GetObjectVersion", "s3:GetObjectVersionTagging"],
            "Resource": [candidates, approved],
        }, {
            "Sid": "PublishApproved", "Effect": "Allow",
            # A large copy is a multipart upload (UploadPartCopy is PutObject): abortable.
            "Action": ["s3:AbortMultipartUpload", "s3:PutObject"], "Resource": approved,
        }, {
            "Sid": "UseArtifactKey", "Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
            "Resource": self.key_arn, "Condition": self._via_s3(),
        })

    def encryption_guard(self) -> list[dict]:
        """Bucket policy statements that deny a `PutObject` (upload, copy, multipart start) naming
        another encryption than SSE-KMS, or another key than the bucket's. Each denies only when the
        request carries the header (`Null: false`): an upload without one gets the bucket's default
        encryption, this key. (A negated operator, `…IfExists` included, is true for a request
        without the key, so it alone would deny those uploads.) Name the key by its ARN: S3 compares
        the header as sent, so an alias or a bare key id is refused."""
        objects = f"{self.bucket_arn}/*"
        return [{
            "Sid": "DenyOtherEncryption", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
            "Resource": objects,
            "Condition": {"StringNotEquals": {_SSE_HEADER: "aws:kms"}, "Null": {_SSE_HEADER: "false"}},
        }, {
            "Sid": "DenyOtherKmsKeys", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
            "Resource": objects,
            "Condition": {"StringNotEquals": {_SSE_KEY_HEADER: self.key_arn}, "Null": {_SSE_KEY_HEADER: "false"}},
        }]

    def approved_area_guard(self, writer_arns: tuple[str, ...]) -> dict:
        """The bucket policy statement that denies writes and deletes in the approved area to every
        principal but `writer_arns` (the review roles). Replication is not affected: S3 writes replicas
        with `s3:ReplicateObject`/`ReplicateDelete`/`ReplicateTags`, which the guard does not name."""
        statement: dict = {
            "Sid": "DenyApprovedWritesButReview", "Effect": "Deny", "Principal": "*",
            "Action": list(APPROVED_WRITE_ACTIONS), "Resource": self._objects(self.approved_prefix),
        }
        if writer_arns:
            statement["Condition"] = {"ArnNotEquals": {"aws:PrincipalArn": sorted(writer_arns)}}
        return statement
