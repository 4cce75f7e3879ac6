"""Create the Delta Lake bucket on the S3-compatible server (MinIO in docker-compose), once.

Reads S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION and the bucket of
DELTA_ROOT (s3://<bucket>/<prefix>). Idempotent; waits for the server for up to 60 s.
"""

from __future__ import annotations

import os
import sys
import time
from urllib.parse import urlsplit

import boto3
from botocore.exceptions import ClientError, EndpointConnectionError


def bucket_of(delta_root: str) -> str:
    """The bucket of an `s3://<bucket>/<prefix>` DELTA_ROOT; ValueError for any other root."""
    parts = urlsplit(delta_root)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"DELTA_ROOT {delta_root!r} is not s3://<bucket>/<prefix>")
    return parts.netloc


def ensure_bucket(bucket: str, *, endpoint: str | None, region: str, wait_s: float = 60) -> bool:
    """True when the bucket was created, False when it already existed."""
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=region)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            s3.head_bucket(Bucket=bucket)
            return False
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
                raise
            s3.create_bucket(Bucket=bucket)
            return True
        except EndpointConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def main() -> int:
    """Create the bucket and print one line saying so; the exit status."""
    try:
        bucket = bucket_of(os.environ.get("DELTA_ROOT", ""))
        created = ensure_bucket(
            bucket,
            endpoint=os.environ.get("S3_ENDPOINT_URL") or None,
            region=os.environ.get("AWS_REGION", "us-east-1"),
        )
    except Exception as e:  # one line for the compose log
        print(f"minio-init: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(f"minio-init: bucket {bucket} {'created' if created else 'already exists'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
