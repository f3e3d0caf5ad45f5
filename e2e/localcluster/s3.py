"""A real S3-compatible server for tests: versitygw's gateway over a POSIX directory."""

from __future__ import annotations

import json
import secrets
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from e2e.localcluster import config
from e2e.localcluster.binaries import bin_path
from e2e.localcluster.procs import GaveUp, Procs, free_port, wait_for

NAME = "s3"


def client(url: str, access_key: str, secret_key: str, region: str = "us-east-1",
           max_attempts: int | None = None) -> Any:
    """A boto3 S3 client for the test server at URL (path-style: the server has no DNS names);
    botocore's retries unless MAX_ATTEMPTS (a test that stops the server wants few)."""
    import boto3  # here, not at the top: the cluster CLI imports this module and needs no boto3
    from botocore.config import Config

    retries = {"max_attempts": max_attempts} if max_attempts else None
    return boto3.client(
        "s3", endpoint_url=url, aws_access_key_id=access_key, aws_secret_access_key=secret_key,
        region_name=region, config=Config(s3={"addressing_style": "path"}, retries=retries),
    )


def launch(procs: Procs, *, listen: str, port: int, data: Path, access_key: str,
           secret_key: str, timeout: float = 60.0) -> None:
    """Start versitygw over DATA on LISTEN:PORT and wait until it accepts connections."""
    data.mkdir(parents=True, exist_ok=True)
    # Credentials go through the environment, not argv, so `ps` does not show the secret.
    procs.start(
        NAME,
        [str(bin_path("versitygw")), "--port", f"{listen}:{port}", "posix", str(data)],
        env={"ROOT_ACCESS_KEY": access_key, "ROOT_SECRET_KEY": secret_key},
    )

    def listening() -> bool:
        if not procs.alive(NAME):
            raise GaveUp(f"versitygw exited early:\n{procs.tail(NAME)}")
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    wait_for(listening, timeout, f"the S3 server on port {port}", interval=0.05)


@dataclass(frozen=True)
class S3Endpoint:
    url: str  # for processes on the host
    pod_url: str  # for processes inside pods (over the pod bridge)
    access_key: str
    secret_key: str
    region: str = "us-east-1"

    def client(self) -> Any:
        return client(self.url, self.access_key, self.secret_key, self.region)

    def new_bucket(self, prefix: str) -> str:
        """A bucket of its own for one test module: PREFIX and random hex."""
        name = f"{prefix}-{secrets.token_hex(4)}"
        self.client().create_bucket(Bucket=name)
        return name

    def credentials_secret(self, name: str, secret_key: str | None = None) -> dict[str, Any]:
        """A Secret NAME with these credentials (SECRET_KEY: a wrong one, to test refusals)."""
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name},
            "stringData": {"accessKeyId": self.access_key,
                           "secretAccessKey": secret_key or self.secret_key},
        }


class S3Server:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir.resolve()
        self.procs = Procs(self.state_dir)
        self._file = self.state_dir / "s3.json"

    @property
    def endpoint(self) -> S3Endpoint:
        return S3Endpoint(**json.loads(self._file.read_text()))

    def running(self) -> bool:
        return self._file.exists() and self.procs.alive(NAME)

    def start(self, timeout: float = 60.0) -> S3Endpoint:
        if self.running():
            return self.endpoint
        self.stop()
        port = free_port()
        ep = S3Endpoint(
            url=f"http://127.0.0.1:{port}",
            pod_url=f"http://{config.BRIDGE_IP}:{port}",
            access_key="etcdop" + secrets.token_hex(4),
            secret_key=secrets.token_hex(16),
        )
        self._file.write_text(json.dumps(asdict(ep)))
        self._file.chmod(0o600)
        # All addresses: pods reach it over the pod bridge.
        launch(self.procs, listen="", port=port, data=self.state_dir / "s3-data",
               access_key=ep.access_key, secret_key=ep.secret_key, timeout=timeout)
        return ep

    def stop(self) -> None:
        self.procs.stop(NAME)
