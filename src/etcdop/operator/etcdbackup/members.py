"""Which member's agent takes a backup (pure): a ready voter, a follower when there is one, so
the leader keeps its disk and network for the cluster."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from etcdop.api.etcdcluster import MemberStatus
from etcdop.operator.sidecar import mounts_credentials


@dataclass(frozen=True)
class Candidate:
    name: str
    ip: str


@dataclass(frozen=True)
class NoCandidate:
    reason: str
    message: str


def pod_ready(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def choose_member(
    members: Iterable[MemberStatus],
    pods: Mapping[str, Mapping[str, Any]],
    credentials_secret: str,
) -> Candidate | NoCandidate:
    """The member to ask: ready, voting, its pod Ready with an IP and mounting CREDENTIALS_SECRET;
    followers before the leader, then by name (stable choice, easy to read in status)."""
    ready = [m for m in members if m.ready and not m.is_learner]
    if not ready:
        return NoCandidate(
            "NoHealthyMember", "no ready voting member to take the backup; waiting for the cluster"
        )
    usable = []
    for m in ready:
        pod = pods.get(m.name)
        ip = ((pod or {}).get("status") or {}).get("podIP")
        if pod is not None and ip and pod_ready(pod):
            usable.append((m, str(ip), mounts_credentials(dict(pod), credentials_secret)))
    if not usable:
        return NoCandidate("NoHealthyMember", "no member pod is Ready with an address yet")
    mounted = [(m, ip) for m, ip, ok in usable if ok]
    if not mounted:
        return NoCandidate(
            "CredentialsNotMounted",
            f"no member pod mounts the Secret {credentials_secret!r}: set it as the "
            "EtcdCluster's spec.backup.storage.credentialsSecret (members created from then on "
            "mount it), or name the Secret the members already mount",
        )
    mounted.sort(key=lambda mi: (mi[0].is_leader, mi[0].name))
    member, ip = mounted[0]
    return Candidate(member.name, ip)
