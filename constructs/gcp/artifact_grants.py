"""What each party may do with the models in the Google Cloud artifact bucket, as conditioned bucket
IAM bindings the bucket grants.

Cloud Storage IAM Conditions test an object's name, not its metadata, so the store's layout is by
prefix, the same as on AWS: candidates under `<models_prefix>candidates/`, and the runtime's model
repository under `<models_prefix>approved/` (the approved versions, `manifest.json` and its
signature `manifest.json.sig`; see `serving_identity`). The bucket writes each binding: a
`GcsArtifactStore` grants on its own bucket (`store.grant_read_approved(...)`, delegating to its
`artifact_bucket`), and a bucket known only by its derived name is named by
`GcsArtifactBucket.from_attributes(...)`, as CDK's `Bucket.fromBucketAttributes`. An identity takes
either (`GcsArtifactGrants`) and only says who. Every grant is created in the grantee's scope, so it
lives (and is addressed) beside its grantee, and names the bucket by its (deterministic) name.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cdktn_provider_google.storage_bucket_iam_member import StorageBucketIamMember, StorageBucketIamMemberCondition
from constructs import Construct

from mlfleet.constructs.validation import GCS_BUCKET_NAME, OBJECT_PREFIX, require

# The registry's layout under the models prefix (the same names as the environment's naming module).
CANDIDATES = "candidates/"
APPROVED = "approved/"
MIRROR = "mirror/"
MANIFEST_NAME = "manifest.json"
MANIFEST_SIGNATURE_NAME = "manifest.json.sig"
OBJECT_VIEWER = "roles/storage.objectViewer"
OBJECT_CREATOR = "roles/storage.objectCreator"
OBJECT_USER = "roles/storage.objectUser"
LEGACY_BUCKET_READER = "roles/storage.legacyBucketReader"


class GcsArtifactGrants(Protocol):
    """What an identity or the transfer job is granted on: a `GcsArtifactStore`, or a `GcsArtifactBucket`."""
    @property
    def bucket_name(self) -> str: ...
    @property
    def candidates_prefix(self) -> str: ...
    @property
    def approved_prefix(self) -> str: ...
    @property
    def manifest_key(self) -> str: ...
    def mirror_prefix(self, source_region: str) -> str: ...
    def grant_read_approved(self, scope: Construct, id_: str, member: str) -> StorageBucketIamMember: ...
    def grant_write_candidates(self, scope: Construct, id_: str, member: str) -> list[StorageBucketIamMember]: ...
    def grant_read_models(self, scope: Construct, id_: str, member: str) -> StorageBucketIamMember: ...
    def grant_publish_approved(self, scope: Construct, id_: str, member: str) -> StorageBucketIamMember: ...
    def grant_list_bucket(self, scope: Construct, id_: str, member: str) -> StorageBucketIamMember: ...
    def grant_write_mirror(self, scope: Construct, id_: str, member: str,
                           source_region: str) -> StorageBucketIamMember: ...


@dataclass(frozen=True, kw_only=True)
class GcsArtifactBucket:
    """The artifact bucket and its models prefix, as its grants name them.

    `GcsArtifactStore` makes one for the bucket it creates (its props are validated there); a
    bucket known only by its derived name comes from `from_attributes`, which validates it.
    """
    bucket_name: str
    models_prefix: str = "models/"
    """Where artifacts live in the bucket (default `models/`)."""

    @classmethod
    def from_attributes(cls, scope: Construct, id_: str, *, bucket_name: str,
                        models_prefix: str = "models/") -> GcsArtifactBucket:
        """A bucket another stack creates, named by its deterministic attributes (no cross-stack
        reference); an invalid attribute is reported as `<scope path>/<id_>: <attribute>: <reason>`."""
        where = f"{scope.node.path}/{id_}" if scope.node.path else id_
        require(bool(GCS_BUCKET_NAME.fullmatch(bucket_name)), where, "bucket_name",
                f"{bucket_name!r} is not a Cloud Storage bucket name")
        require(bool(OBJECT_PREFIX.fullmatch(models_prefix)), where, "models_prefix",
                f"{models_prefix!r}: lowercase letters, digits, '-', '_', '/', ending with '/'")
        return cls(bucket_name=bucket_name, models_prefix=models_prefix)

    @property
    def candidates_prefix(self) -> str:
        return f"{self.models_prefix}{CANDIDATES}"

    @property
    def approved_prefix(self) -> str:
        """`<models_prefix>approved/`: the runtime's model repository, written by review only."""
        return f"{self.models_prefix}{APPROVED}"

    @property
    def manifest_key(self) -> str:
        return f"{self.approved_prefix}{MANIFEST_NAME}"

    @property
    def manifest_signature_key(self) -> str:
        return f"{self.approved_prefix}{MANIFEST_SIGNATURE_NAME}"

    def mirror_prefix(self, source_region: str) -> str:
        """Where copies of an AWS region's models land (outside `approved/`: see cross_cloud_artifact_copy)."""
        return f"{self.models_prefix}{MIRROR}{source_region}/"

    def _objects(self, prefix: str) -> str:
        return f'resource.name.startsWith("projects/_/buckets/{self.bucket_name}/objects/{prefix}")'

    def _grant(self, scope: Construct, id_: str, role: str, member: str, title: str, expression: str,
               description: str) -> StorageBucketIamMember:
        return StorageBucketIamMember(
            scope, id_, bucket=self.bucket_name, role=role, member=member,
            condition=StorageBucketIamMemberCondition(title=title, description=description, expression=expression))

    def grant_read_approved(self, scope: Construct, id_: str, member: str) -> StorageBucketIamMember:
        """Read the approved area only: the signed manifest and the approved versions (serving). No
        listing: the runtime reads the names the manifest gives, and listing is checked on the bucket."""
        return self._grant(scope, id_, OBJECT_VIEWER, member, "approved-read", self._objects(self.approved_prefix),
                           "Read the approved models, the manifest and its signature only")

    def grant_write_candidates(self, scope: Construct, id_: str, member: str) -> list[StorageBucketIamMember]:
        """Create and read candidates only: no overwrite (objectCreator has no delete, which replacing
        an object needs), nothing in the approved area (training). Two bindings, `<id_>` and `<id_>-read`."""
        candidates = self._objects(self.candidates_prefix)
        return [self._grant(scope, id_, OBJECT_CREATOR, member, "candidate-write", candidates,
                            "Create candidate artifacts only (no overwrite, nothing approved)"),
                self._grant(scope, f"{id_}-read", OBJECT_VIEWER, member, "candidate-read", candidates,
                            "Read candidate artifacts only")]

    def grant_read_models(self, scope: Construct, id_: str, member: str) -> StorageBucketIamMember:
        """List the bucket and read candidates, approved models and mirrored copies (review)."""
        # Listing is checked on the bucket, not on objects: review lists names, reads the areas.
        listing = 'resource.type == "storage.googleapis.com/Bucket"'
        areas = " || ".join(self._objects(p) for p in (self.candidates_prefix, self.approved_prefix,
                                                        f"{self.models_prefix}{MIRROR}"))
        return self._grant(scope, id_, OBJECT_VIEWER, member, "models-read", f"{listing} || {areas}",
                           "List the bucket and read candidates, approved and mirrored models")

    def grant_publish_approved(self, scope: Construct, id_: str, member: str) -> StorageBucketIamMember:
        """Write the approved area: the copied version, the manifest and its signature (review)."""
        return self._grant(scope, id_, OBJECT_USER, member, "approved-publish", self._objects(self.approved_prefix),
                           "Publish approved models, the manifest and its signature")

    def grant_list_bucket(self, scope: Construct, id_: str, member: str) -> StorageBucketIamMember:
        """See the bucket and list its objects, with no object access (a transfer agent's bucket-level need)."""
        return StorageBucketIamMember(scope, id_, bucket=self.bucket_name, role=LEGACY_BUCKET_READER, member=member)

    def grant_write_mirror(self, scope: Construct, id_: str, member: str, source_region: str) -> StorageBucketIamMember:
        """Write under the mirror prefix of one AWS region only (the Storage Transfer agent)."""
        return self._grant(scope, id_, OBJECT_USER, member, "mirror-write",
                           self._objects(self.mirror_prefix(source_region)), "Write mirrored artifacts only")
