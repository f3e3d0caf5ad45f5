"""Where a store is and how to reach it. Credentials come from files of a mounted Secret only
(docs/decisions.md): nothing here is ever logged, and `repr` hides the secrets."""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

ACCESS_KEY_FILE = "accessKeyId"
SECRET_KEY_FILE = "secretAccessKey"
SESSION_TOKEN_FILE = "sessionToken"
SSE_C_KEY_FILE = "sseCustomerKey"  # base64 of the 32-byte AES-256 key
_SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")

ENCRYPTIONS = ("", "SSE-S3", "SSE-C")


@dataclass(frozen=True)
class Credentials:
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    session_token: str = field(default="", repr=False)
    sse_customer_key: bytes = field(default=b"", repr=False)

    @classmethod
    def from_dir(cls, base: Path, secret: str = "") -> Credentials:
        """Read the files of a mounted Secret: BASE itself, or BASE/SECRET when SECRET is named
        (the operator mounts each storage Secret under its own name)."""
        if secret and not _SECRET_NAME.match(secret):
            raise ValueError(f"credentials: {secret!r} is not a Secret name")
        folder = base / secret if secret else base

        def read(name: str, required: bool) -> str:
            path = folder / name
            try:
                return path.read_text().strip()
            except FileNotFoundError:
                if required:
                    raise ValueError(
                        f"credentials: {path} is missing; the storage Secret needs the keys "
                        f"{ACCESS_KEY_FILE} and {SECRET_KEY_FILE}, mounted at {folder}"
                    ) from None
                return ""

        sse_key = read(SSE_C_KEY_FILE, False)
        raw = base64.b64decode(sse_key, validate=True) if sse_key else b""
        if raw and len(raw) != 32:
            raise ValueError(
                f"credentials: {folder / SSE_C_KEY_FILE} must hold base64 of 32 bytes "
                f"(an AES-256 key), it holds {len(raw)} bytes"
            )
        return cls(
            read(ACCESS_KEY_FILE, True),
            read(SECRET_KEY_FILE, True),
            read(SESSION_TOKEN_FILE, False),
            raw,
        )


@dataclass(frozen=True)
class StoreConfig:
    """One bucket at one endpoint ("" endpoint: AWS's own for REGION)."""

    bucket: str
    credentials: Credentials
    endpoint: str = ""
    region: str = "us-east-1"
    force_path_style: bool = False
    encryption: str = ""  # one of ENCRYPTIONS

    def __post_init__(self) -> None:
        if not self.bucket:
            raise ValueError("storage: bucket is empty; name the bucket backups go to")
        if self.encryption not in ENCRYPTIONS:
            raise ValueError(
                f"storage: encryption {self.encryption!r} is not one of {', '.join(ENCRYPTIONS)}"
            )
        if self.encryption == "SSE-C" and not self.credentials.sse_customer_key:
            raise ValueError(
                f"storage: encryption SSE-C needs the key file {SSE_C_KEY_FILE} in the "
                "credentials Secret (base64 of 32 bytes)"
            )

    def sse_params(self) -> dict[str, str | bytes]:
        """boto3 arguments for writes (and, for SSE-C, for reads too); botocore encodes the raw
        SSE-C key and adds its MD5 itself."""
        if self.encryption == "SSE-S3":
            return {"ServerSideEncryption": "AES256"}
        if self.encryption == "SSE-C":
            key = self.credentials.sse_customer_key
            return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}
        return {}

    def read_params(self) -> dict[str, str | bytes]:
        return self.sse_params() if self.encryption == "SSE-C" else {}

    @property
    def sse_c_key_md5(self) -> str:
        """The key's fingerprint S3 itself records: safe to store, names which key to use."""
        digest = hashlib.md5(self.credentials.sse_customer_key, usedforsecurity=False).digest()
        return base64.b64encode(digest).decode()
