"""The Delta Lake resource: configuration in the UI, a `chainlake.lake.DeltaStore` at run time.

Assets and sensors take `delta: dg.ResourceParam[DeltaStore]`; this resource is only the
configuration (Dagster's documented "vend another object" pattern), so a test can pass a
plain `DeltaStore` in its place.

Configuration: `root` (a folder or s3://bucket/prefix) and `storage`, one of

- `LocalStorage()` (config `storage: {local: {}}`, the default): `root` is a folder;
- `S3Storage(...)` (config `storage: {s3: {...}}`): `root` is s3://bucket/prefix on AWS S3 or an
  S3-compatible server, with the endpoint, region and credentials of the variant.

The variants are told apart by their `kind` field (a Pydantic discriminated union, which
Dagster shows as a selector), as dagster-deltalake does with `provider`. A field left unset is
read from the environment when the run starts:

| field | variable | else |
|---|---|---|
| `root` | `DELTA_ROOT` | `data/delta` |
| `S3Storage.endpoint_url` | `S3_ENDPOINT_URL` | AWS S3 |
| `S3Storage.region` | `AWS_REGION`, `AWS_DEFAULT_REGION` | `us-east-1` |
| `S3Storage.access_key_id` | `AWS_ACCESS_KEY_ID` | none (anonymous) |
| `S3Storage.secret_access_key` | `AWS_SECRET_ACCESS_KEY` | none |
| `S3Storage.create_bucket` | `DELTA_S3_CREATE_BUCKET=true` also allows it | false |

The credentials are resolved here, not left to the AWS SDKs, because DuckDB's views over the
tables get them from `DeltaStore.storage_options()` and find nothing otherwise.
"""

from __future__ import annotations

from typing import Literal

import dagster as dg
from pydantic import Field

from chainlake.lake import DeltaStore
from resources.env import env_optional, env_str

DEFAULT_ROOT = "data/delta"


class LocalStorage(dg.Config):
    """Delta tables in a local folder (or any mounted file system)."""

    kind: Literal["local"] = Field(
        default="local", description="Selects local storage: `root` is a folder."
    )


class S3Storage(dg.Config):
    """Delta tables on AWS S3 or an S3-compatible server such as MinIO."""

    kind: Literal["s3"] = Field(
        default="s3", description="Selects S3 storage: `root` is s3://bucket/prefix."
    )
    endpoint_url: str | None = Field(
        default=None,
        description="Endpoint of an S3-compatible server, e.g. http://minio:9000. "
        "Unset: S3_ENDPOINT_URL when the run starts, else AWS S3.",
    )
    region: str | None = Field(
        default=None,
        description="Region of the bucket. Unset: AWS_REGION, else AWS_DEFAULT_REGION, "
        "else us-east-1.",
    )
    access_key_id: str | None = Field(
        default=None, description="Access key id. Unset: AWS_ACCESS_KEY_ID when the run starts."
    )
    secret_access_key: str | None = Field(
        default=None,
        description="Secret access key. Unset: AWS_SECRET_ACCESS_KEY when the run starts.",
    )
    allow_http: bool = Field(
        default=False,
        description="Allow a plain-http endpoint (local MinIO or test servers); an http:// "
        "endpoint_url implies it.",
    )
    create_bucket: bool = Field(
        default=False,
        description="Create the bucket when it does not exist, else a missing bucket fails the "
        "run at once. DELTA_S3_CREATE_BUCKET=true in the run's environment also allows it.",
    )


class DeltaResource(dg.ConfigurableResource):
    """Where the Delta tables live: a local folder, or S3-compatible object storage.

    `create_resource` vends a `DeltaStore`; with S3 storage it first checks that the bucket
    exists and takes the credentials, so a run against a wrong bucket fails once, up front.
    """

    root: str | None = Field(
        default=None,
        description="Local folder or s3://bucket/prefix holding every Delta table. "
        f"Unset: DELTA_ROOT when the run starts, else {DEFAULT_ROOT}.",
    )
    storage: LocalStorage | S3Storage = Field(
        default_factory=LocalStorage,
        discriminator="kind",
        description="Where `root` is: `local` (a folder) or `s3` (a bucket, with its endpoint "
        "and credentials).",
    )

    def store(self) -> DeltaStore:
        """The store this configuration describes, unset fields read from the environment now.

        Returns:
            A `DeltaStore` (the bucket is not contacted here).

        Raises:
            ValueError: `root` and `storage` disagree (an s3:// root with local storage, or a
                folder with S3 storage).
        """
        root = self.root or env_str(dg.EnvVar("DELTA_ROOT"), DEFAULT_ROOT)
        storage = self.storage
        if isinstance(storage, LocalStorage):
            if root.startswith("s3://"):
                # DELTA_ROOT changed to s3:// after the code location chose local storage at
                # load: writing there without the S3 settings would only half work.
                raise ValueError(
                    f"Delta root {root} is on S3 but the resource's storage is local: reload "
                    "the code location (DELTA_ROOT selects the storage when it loads) or "
                    "configure storage: s3"
                )
            return DeltaStore(root=root)
        if not root.startswith("s3://"):
            raise ValueError(f"Delta root {root!r} must be s3://bucket/prefix with storage: s3")
        return DeltaStore(
            root=root,
            s3_endpoint_url=storage.endpoint_url or env_optional(dg.EnvVar("S3_ENDPOINT_URL")),
            # None leaves AWS_REGION / AWS_DEFAULT_REGION to DeltaStore.region, read at use
            s3_region=storage.region,
            s3_access_key_id=storage.access_key_id or env_optional(dg.EnvVar("AWS_ACCESS_KEY_ID")),
            s3_secret_access_key=storage.secret_access_key
            or env_optional(dg.EnvVar("AWS_SECRET_ACCESS_KEY")),
            s3_allow_http=storage.allow_http,
            s3_create_bucket=storage.create_bucket,
        )

    def create_resource(self, context: dg.InitResourceContext) -> DeltaStore:
        """The store for this run; a bucket that is missing or refuses us fails here, once.

        Args:
            context: Dagster's resource initialisation context (unused).

        Returns:
            The run's `DeltaStore`.
        """
        store = self.store()
        if store.is_s3:
            store.check_bucket()
        return store
