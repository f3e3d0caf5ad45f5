"""Object store failures, each naming its cause and what to do, so a backup's status reads well.

boto3 raises a handful of exception types whose meaning hides in an error code; `translate` turns
them into the few causes an operator can act on.
"""

from __future__ import annotations

from typing import Any

# Codes servers give for credentials they refuse (AWS, MinIO, versitygw's own XAdmin* codes).
_CREDENTIAL_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "InvalidToken",
    "ExpiredToken",
    "XAdminUserNotFound",
    "XAdminAuthFailed",
    "AuthorizationHeaderMalformed",
    "403",
}
_BUCKET_CODES = {"NoSuchBucket"}
_EXISTS_CODES = {"PreconditionFailed", "412", "ConditionalRequestConflict"}
_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}


class StoreError(Exception):
    """An object store call failed; the message says on what and why."""

    reason = "StoreError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BucketMissing(StoreError):
    reason = "BucketMissing"


class BadCredentials(StoreError):
    reason = "BadCredentials"


class EndpointDown(StoreError):
    reason = "EndpointDown"


class HashMismatch(StoreError):
    """Bytes read or written do not match the checksum they must have."""

    reason = "HashMismatch"


class ChecksumNotChecked(StoreError):
    """Over plain http bodies go without a payload signature, so the server must confirm each
    body's checksum; one that does not cannot be trusted with them."""

    reason = "ChecksumNotChecked"


class SizeMismatch(StoreError):
    reason = "SizeMismatch"


class ObjectExists(StoreError):
    """A key we create already exists: backups never overwrite."""

    reason = "ObjectExists"


class ObjectMissing(StoreError):
    reason = "ObjectMissing"


class UploadTooLarge(StoreError):
    """The stream outgrew S3's 10,000 parts at the chosen part size."""

    reason = "UploadTooLarge"


def _code(exc: BaseException) -> str:
    response: Any = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    error = response.get("Error") or {}
    return str(error.get("Code") or response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))


def translate(
    exc: BaseException, operation: str, endpoint: str, bucket: str, key: str = ""
) -> StoreError:
    """EXC, raised by boto3 during OPERATION, as the StoreError naming its cause."""
    if isinstance(exc, StoreError):
        return exc
    where = f"s3://{bucket}/{key}" if key else f"bucket {bucket!r}"
    name = type(exc).__name__
    if name in {
        "EndpointConnectionError",
        "ConnectionClosedError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ConnectionError",
        "ProxyConnectionError",
    }:
        return EndpointDown(
            f"{operation} {where}: the S3 endpoint {endpoint} did not answer ({name}); "
            "check that the server runs and spec.storage.endpoint points to it"
        )
    code = _code(exc)
    if code in _BUCKET_CODES:
        return BucketMissing(
            f"{operation} {where}: bucket {bucket!r} does not exist at {endpoint}; "
            "create it or fix spec.storage.bucket"
        )
    if code in _CREDENTIAL_CODES:
        return BadCredentials(
            f"{operation} {where}: {endpoint} refused the credentials ({code}); "
            "check the access key and secret key in the storage credentials Secret"
        )
    if code in _EXISTS_CODES:
        return ObjectExists(
            f"{operation} {where}: the object already exists and backups never overwrite; "
            "this backup was not stored"
        )
    if code in _MISSING_CODES:
        return ObjectMissing(f"{operation} {where}: no such object at {endpoint}")
    detail = str(exc) or name
    return StoreError(f"{operation} {where} at {endpoint} failed: {detail}")
