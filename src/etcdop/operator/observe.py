"""Turn what the API server and etcd say into the planner's snapshot (`model.Observed`).

Pure functions over plain dicts and facade results; the reconciler does the I/O around them.
"""

from __future__ import annotations

import secrets
import string
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from etcdop.etcd import Health, Status
from etcdop.etcd import Member as EtcdMember
from etcdop.operator import manifests
from etcdop.operator.model import Member, MemberHealth, MemberPod, PodPhase

CRASH_LOOPS_FOR_DATA_LOSS = 3
"""An etcd container that failed this many times in a row is taken as a member that cannot run on
its data (the usual cause: a data directory wiped under a member that had joined)."""


def member_name(peer_urls: Iterable[str], cluster: str) -> str:
    """The pod name of a member, from its peer URL `http://<pod>.<cluster>-peer.<ns>...`."""
    marker = f".{manifests.peer_service_name(cluster)}."
    for url in peer_urls:
        host = urlsplit(url).hostname or ""
        if marker in f"{host}.":
            return host.split(".", 1)[0]
    return ""


def pod_ip(pod: Mapping[str, Any]) -> str:
    return str((pod.get("status") or {}).get("podIP") or "")


def _etcd_container(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") == manifests.ETCD_CONTAINER:
            return dict(cs)
    return {}


def crash_looping(pod: Mapping[str, Any]) -> bool:
    cs = _etcd_container(pod)
    if cs.get("ready") or int(cs.get("restartCount") or 0) < CRASH_LOOPS_FOR_DATA_LOSS:
        return False
    waiting = (cs.get("state") or {}).get("waiting") or {}
    last = (cs.get("lastState") or {}).get("terminated") or {}
    return waiting.get("reason") == "CrashLoopBackOff" or int(last.get("exitCode") or 0) != 0


def member_pod(pod: Mapping[str, Any]) -> MemberPod:
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    annotations = meta.get("annotations") or {}
    conditions = status.get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    try:
        phase = PodPhase(status.get("phase") or "Pending")
    except ValueError:
        phase = PodPhase.UNKNOWN
    state = annotations.get(manifests.ANN_INITIAL_STATE, "existing")
    return MemberPod(
        name=str(meta.get("name", "")),
        phase=phase,
        ready=ready,
        deleting=bool(meta.get("deletionTimestamp")),
        initial_cluster_state="new" if state == "new" else "existing",
        version=str(annotations.get(manifests.ANN_VERSION, "")),
        data_lost=crash_looping(pod),
    )


def member_health(status: Status | None, health: Health | None) -> MemberHealth:
    if status is None:
        return MemberHealth()
    return MemberHealth(
        reachable=True,
        healthy=bool(health and health.healthy) and not status.errors and status.leader_id != 0,
        is_leader=status.is_leader,
        raft_index=status.raft_index,
        version=status.version,
    )


def member(m: EtcdMember, cluster: str, health: MemberHealth) -> Member:
    return Member(
        id=m.id,
        name=member_name(m.peer_urls, cluster),
        peer_urls=m.peer_urls,
        is_learner=m.is_learner,
        started=bool(m.name),
        health=health,
    )


def agreed_membership(
    views: Mapping[str, Sequence[EtcdMember]],
) -> tuple[Sequence[EtcdMember] | None, frozenset[str]]:
    """The member list a quorum of its own voters report, and the names of the pods that
    report another one (a member that lost its data and started a cluster of its own).

    VIEWS maps a pod name to the member list that pod's etcd answered. Trusting a single member
    would let such a rogue member make every other member look like an orphan.
    """

    def key(ms: Sequence[EtcdMember]) -> frozenset[tuple[int, bool]]:
        return frozenset((m.id, m.is_learner) for m in ms)

    counts = Counter(key(ms) for ms in views.values())
    if not counts:
        return None, frozenset()
    ranked = counts.most_common()
    best, votes = ranked[0]
    voters = sum(1 for _, learner in best if not learner)
    if (len(ranked) > 1 and ranked[1][1] == votes) or votes < voters // 2 + 1:
        return None, frozenset()  # no view is held by a quorum: decide nothing on any of them
    chosen = next(ms for ms in views.values() if key(ms) == best)
    return chosen, frozenset(name for name, ms in views.items() if key(ms) != best)


def initial_cluster(members: Iterable[Member], extra: str = "", extra_url: str = "") -> str:
    """`name=peerURL,...` of the members (named from their peer URLs), plus EXTRA if given."""
    parts = [f"{m.name}={url}" for m in members if m.name for url in m.peer_urls]
    if extra and extra_url and not any(p.startswith(f"{extra}=") for p in parts):
        parts.append(f"{extra}={extra_url}")
    return ",".join(sorted(parts))


_ALPHABET = string.ascii_lowercase + string.digits


def new_member_name(cluster: str, taken: Iterable[str]) -> str:
    """`<cluster>-<5 random chars>`, unlike any name in TAKEN (pods, members, claims)."""
    used = set(taken)
    while True:
        name = f"{cluster}-{''.join(secrets.choice(_ALPHABET) for _ in range(5))}"
        if name not in used:
            return name
