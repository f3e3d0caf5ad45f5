"""A real S3 server (versitygw) of a test's own, on one loopback port kept across restarts, so a
test can stop it mid-upload and bring it back. (The session-wide `s3_server` fixture needs the
whole control plane and cannot be stopped by one test.)"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from types import TracebackType
from typing import Any

from e2e.localcluster.procs import Procs, free_port
from e2e.localcluster.s3 import NAME, client, launch
from etcdop.objectstore import Credentials, StoreConfig


class S3Procs:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.data = state_dir / "data"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.access_key = "test" + secrets.token_hex(4)
        self.secret_key = secrets.token_hex(16)
        self.region = "us-east-1"
        self._procs = Procs(state_dir)

    def start(self) -> S3Procs:
        launch(self._procs, listen="127.0.0.1", port=self.port, data=self.data,
               access_key=self.access_key, secret_key=self.secret_key, timeout=30)
        return self

    def stop(self) -> None:
        self._procs.stop(NAME)

    def alive(self) -> bool:
        return self._procs.alive(NAME)

    def __enter__(self) -> S3Procs:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def client(self) -> Any:
        return client(self.url, self.access_key, self.secret_key, self.region, max_attempts=2)

    def new_bucket(self) -> str:
        name = "b-" + os.urandom(4).hex()
        self.client().create_bucket(Bucket=name)
        return name

    def config(self, bucket: str, **kw: Any) -> StoreConfig:
        return StoreConfig(
            bucket=bucket,
            credentials=kw.pop("credentials", Credentials(self.access_key, self.secret_key)),
            endpoint=self.url, region=self.region, force_path_style=True, **kw,
        )

    def write_credentials(self, folder: Path, secret_key: str | None = None) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "accessKeyId").write_text(self.access_key)
        (folder / "secretAccessKey").write_text(secret_key or self.secret_key)
        return folder

    def uploads(self, bucket: str) -> list[dict[str, Any]]:
        """Multipart uploads still open in BUCKET: a failed backup must leave none."""
        found: list[dict[str, Any]] = self.client().list_multipart_uploads(Bucket=bucket).get(
            "Uploads", []
        )
        return found

    def keys(self, bucket: str) -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]
