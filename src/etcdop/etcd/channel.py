"""One gRPC channel per etcd member, built here rather than by etcd3aio.

etcd3aio's own client puts every endpoint behind one round-robin `ipv4:` channel: calls that must
reach one member (status, move leader, snapshot) would land on a random one, and DNS names (the
way pods are addressed) are refused by the `ipv4:` scheme. So we dial each member by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import grpc.aio

# Short reconnect backoff: a restarted member must look healthy again within seconds, not after
# gRPC's default backoff (up to 120 s) has run out.
_OPTIONS: list[tuple[str, int]] = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2_000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    # A fixed 1 MiB flow-control window per stream instead of gRPC's BDP probing, which grew it
    # over a long snapshot stream and buffered that much whenever the upload lagged: the agent's
    # peak RSS at 512 MiB is now 6-9 % above the one at 64 MiB (bench/backup.py).
    ("grpc.http2.bdp_probe", 0),
    ("grpc.http2.lookahead_bytes", 1024 * 1024),
]


@dataclass(frozen=True)
class TLSConfig:
    """PEM bytes for TLS to etcd; CERT and KEY only for client-certificate auth."""

    ca: bytes
    cert: bytes | None = None
    key: bytes | None = None
    server_name: str | None = None  # when the certificate does not name the address we dial

    @classmethod
    def from_files(cls, ca: Path, cert: Path | None = None, key: Path | None = None) -> TLSConfig:
        return cls(
            ca=ca.read_bytes(),
            cert=cert.read_bytes() if cert else None,
            key=key.read_bytes() if key else None,
        )


def target_of(endpoint: str) -> tuple[str, bool]:
    """`host:port` to dial and whether the endpoint asked for TLS, from a URL or `host:port`."""
    if "://" not in endpoint:
        endpoint = f"http://{endpoint}"
    url = urlsplit(endpoint)
    if url.scheme not in ("http", "https") or not url.hostname or url.port is None:
        raise ValueError(
            f"etcd endpoint {endpoint!r} is not http(s)://host:port or host:port; "
            "give a member's client URL such as http://10.0.0.4:2379"
        )
    host = f"[{url.hostname}]" if ":" in url.hostname else url.hostname
    return f"{host}:{url.port}", url.scheme == "https"


def open_channel(endpoint: str, tls: TLSConfig | None) -> Any:
    """An insecure or TLS channel to the one member at ENDPOINT (grpc.aio.Channel)."""
    target, wants_tls = target_of(endpoint)
    if wants_tls and tls is None:
        raise ValueError(
            f"etcd endpoint {endpoint!r} is https but no TLS settings were given; "
            "pass tls=TLSConfig(ca=...) to EtcdClient"
        )
    if tls is None:
        return grpc.aio.insecure_channel(target, options=_OPTIONS)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=tls.ca, private_key=tls.key, certificate_chain=tls.cert
    )
    options: list[tuple[str, Any]] = list(_OPTIONS)
    if tls.server_name:
        options.append(("grpc.ssl_target_name_override", tls.server_name))
    return grpc.aio.secure_channel(target, credentials, options=options)
