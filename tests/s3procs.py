"""A real S3 server (versitygw) of a test's own, on one loopback port kept across restarts, so a
test can stop it mid-upload and bring it back. (The session-wide `s3_server` fixture needs the
whole control plane and cannot be stopped by one test.)"""

from __future__ import annotations

import os
import secrets
import socket
from pathlib import Path
from types import TracebackType
from typing import Any

import boto3
from botocore.config import Config

from e2e.localcluster.binaries import bin_path
from e2e.localcluster.procs import GaveUp, Procs, free_port, wait_for
from etcdop.objectstore import Credentials, StoreConfig

NAME = "versitygw"


class S3Procs:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.data = state_dir / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.access_key = "test" + secrets.token_hex(4)
        self.secret_key = secrets.token_hex(16)
        self.region = "us-east-1"
        self._procs = Procs(state_dir)

    def start(self) -> S3Procs:
        self._procs.start(
            NAME,
            [str(bin_path("versitygw")), "--port", f"127.0.0.1:{self.port}",
             "posix", str(self.data)],
            env={"ROOT_ACCESS_KEY": self.access_key, "ROOT_SECRET_KEY": self.secret_key},
        )

        def listening() -> bool:
            if not self._procs.alive(NAME):
                raise GaveUp(f"versitygw exited:\n{self._procs.tail(NAME)}")
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True

        wait_for(listening, 30, f"versitygw on port {self.port}", interval=0.05)
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
        return boto3.client(
            "s3", endpoint_url=self.url, aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key, region_name=self.region,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )

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
