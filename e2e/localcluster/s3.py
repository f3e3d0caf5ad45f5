"""A real S3-compatible server for tests: versitygw's gateway over a POSIX directory."""

from __future__ import annotations

import json
import secrets
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

from e2e.localcluster import config
from e2e.localcluster.binaries import bin_path
from e2e.localcluster.procs import GaveUp, Procs, free_port, wait_for

NAME = "s3"


@dataclass(frozen=True)
class S3Endpoint:
    url: str  # for processes on the host
    pod_url: str  # for processes inside pods (over the pod bridge)
    access_key: str
    secret_key: str
    region: str = "us-east-1"


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
        data = self.state_dir / "s3-data"
        data.mkdir(parents=True, exist_ok=True)
        port = free_port()
        ep = S3Endpoint(
            url=f"http://127.0.0.1:{port}",
            pod_url=f"http://{config.BRIDGE_IP}:{port}",
            access_key="etcdop" + secrets.token_hex(4),
            secret_key=secrets.token_hex(16),
        )
        # Credentials go through the environment, not argv, so `ps` does not show the secret.
        self.procs.start(
            NAME,
            [str(bin_path("versitygw")), "--port", f":{port}", "posix", str(data)],
            env={"ROOT_ACCESS_KEY": ep.access_key, "ROOT_SECRET_KEY": ep.secret_key},
        )
        self._file.write_text(json.dumps(asdict(ep)))
        self._file.chmod(0o600)

        def listening() -> bool:
            if not self.procs.alive(NAME):
                raise GaveUp(f"versitygw exited early:\n{self.procs.tail(NAME)}")
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True

        wait_for(listening, timeout, f"the S3 server on port {port}")
        return ep

    def stop(self) -> None:
        self.procs.stop(NAME)
