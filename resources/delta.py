"""The Delta Lake resource: configuration in the UI, a `chainlake.lake.DeltaStore` at run time.

Assets and sensors take `delta: dg.ResourceParam[DeltaStore]`; this resource is only the
configuration (Dagster's documented "vend another object" pattern), so a test can pass a
plain `DeltaStore` in its place.
"""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from chainlake.lake import DeltaStore


class DeltaResource(dg.ConfigurableResource):
    """Where the Delta tables live: a local folder, or S3-compatible object storage."""

    root: str = Field(
        default="data/delta",
        description="Local folder or s3://bucket/prefix holding every Delta table (DELTA_ROOT).",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="Endpoint of an S3-compatible server, e.g. MinIO (S3_ENDPOINT_URL).",
    )
    s3_region: str | None = Field(
        default=None,
        description="Region of the bucket; unset: AWS_REGION, AWS_DEFAULT_REGION, else us-east-1.",
    )
    s3_access_key_id: str | None = Field(default=None, description="AWS_ACCESS_KEY_ID.")
    s3_secret_access_key: str | None = Field(default=None, description="AWS_SECRET_ACCESS_KEY.")
    s3_allow_http: bool = Field(
        default=False, description="Allow a plain-http endpoint (local MinIO or test servers)."
    )
    s3_create_bucket: bool = Field(
        default=False,
        description="Create the bucket when it does not exist, else a missing bucket is an "
        "error (or set DELTA_S3_CREATE_BUCKET=true).",
    )

    def create_resource(self, context: dg.InitResourceContext) -> DeltaStore:
        """The store for this run; a bucket that is missing or refuses us fails here, once."""
        store = DeltaStore(
            root=self.root,
            s3_endpoint_url=self.s3_endpoint_url,
            s3_region=self.s3_region,
            s3_access_key_id=self.s3_access_key_id,
            s3_secret_access_key=self.s3_secret_access_key,
            s3_allow_http=self.s3_allow_http,
            s3_create_bucket=self.s3_create_bucket,
        )
        if store.is_s3:
            store.check_bucket()
        return store
