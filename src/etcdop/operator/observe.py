"""Turn what the API server and etcd say into the planner's snapshot (`model.Observed`).

Pure functions over plain dicts and facade results; the reconciler does the I/O around them.
"""

from __future__ import annotations

import datetime as dt
import secrets
import string
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from etcdop.etcd import Health, Status
from etcdop.etcd import Member as EtcdMember
from etcdop.operator import manifests, sidecar
from etcdop.operator.model import Member, MemberHealth, MemberPod, PodPhase, quorum
from etcdop.operator.restorerequest import restore_uid

DATA_UNUSABLE = (
    ("is out of range [lastIndex", "its raft log is behind what the cluster committed"),
    ("cannot fetch cluster info from peer urls", "its data directory is empty"),
    # etcd compares its --initial-cluster with the live membership only when it has no
    # write-ahead log; a member that ran before and fails this check has lost its data dir.
    ("no match found for existing member", "its data directory is empty"),
    ("member count is unequal", "its data directory is empty"),
    ("failed to find database snapshot file", "its database file is missing"),
    ("failed to recover v3 backend", "its database file is unreadable"),
    ("crc mismatch", "its write-ahead log is corrupt"),
)
"""etcd's fatal errors that prove a member cannot run on its data, and what each means. Only
these count as data loss: a restart count, a liveness kill or an OOM kill says nothing about
the data, and taking them as loss would replace sound members one after another."""

MESSAGE_TAIL = 300
"""Characters of a termination message kept in status for people."""


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


def url_host(ip: str) -> str:
    """An address as it stands in a URL: IPv6 in brackets."""
    return f"[{ip}]" if ":" in ip and not ip.startswith("[") else ip


def _etcd_container(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") == manifests.ETCD_CONTAINER:
            return dict(cs)
    return {}


def _last_termination(cs: Mapping[str, Any]) -> Mapping[str, Any]:
    """The etcd container's latest termination: the current state if it is terminated now,
    else the previous one (kept by the kubelet across one restart)."""
    now = (cs.get("state") or {}).get("terminated")
    return dict(now or (cs.get("lastState") or {}).get("terminated") or {})


def data_loss_evidence(pod: Mapping[str, Any]) -> str:
    """What in etcd's last termination proves the member's data unusable, or ""."""
    cs = _etcd_container(pod)
    if cs.get("ready") or (cs.get("state") or {}).get("running"):
        return ""  # it runs again: whatever an earlier run died of is over
    message = str(_last_termination(cs).get("message") or "")
    for needle, meaning in DATA_UNUSABLE:
        if needle in message:
            return f"{meaning} (etcd said: ...{needle}...)"
    return ""


def last_error(pod: Mapping[str, Any]) -> str:
    """One line for people: how the etcd container last ended, with the end of its message."""
    cs = _etcd_container(pod)
    term = _last_termination(cs)
    if not term:
        return ""
    reason = term.get("reason") or "Terminated"
    message = " ".join(str(term.get("message") or "").split())[-MESSAGE_TAIL:]
    restarts = int(cs.get("restartCount") or 0)
    text = f"{reason}, exit code {term.get('exitCode', '?')}, {restarts} restart(s)"
    return f"{text}: {message}" if message else text


def node_lost(node: Mapping[str, Any] | None) -> bool:
    """The node is gone or its Ready condition is not True (NotReady, or Unknown: unreachable)."""
    if node is None:
        return True
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return bool(c.get("status") != "True")
    return False


def member_pod(
    pod: Mapping[str, Any], nodes: Mapping[str, Mapping[str, Any]] | None = None
) -> MemberPod:
    """NODES maps node names to Node objects; None when the caller does not know the nodes."""
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
        data_lost=bool(data_loss_evidence(pod)),
        last_error=last_error(pod),
        node=str((pod.get("spec") or {}).get("nodeName") or ""),
        waiting=_waiting(pod),
        node_lost=_on_lost_node(pod, nodes),
        restore=restore_uid(pod),
        pod_hash=str(annotations.get(manifests.ANN_POD_HASH, "")),
        serving=(meta.get("labels") or {}).get(manifests.LABEL_SERVING) == "true",
        created=_timestamp(meta.get("creationTimestamp")),
        kubelet_synced=int(status.get("observedGeneration") or meta.get("generation") or 0)
        >= int(meta.get("generation") or 0),
    )


def restore_failure(pod: Mapping[str, Any]) -> str:
    """How a restore seed's `restore` init container last failed, or "" (never ran, running,
    or succeeded): the reason a restore does not go on, in `etcdop restore`'s own words."""
    for cs in (pod.get("status") or {}).get("initContainerStatuses") or []:
        if cs.get("name") != sidecar.RESTORE_CONTAINER:
            continue
        term = _last_termination(cs)
        if not term or term.get("exitCode") in (0, None):
            return ""
        message = " ".join(str(term.get("message") or "").split())[-MESSAGE_TAIL:]
        return f"the restore init container failed (exit code {term.get('exitCode')}): {message}"
    return ""


def _waiting(pod: Mapping[str, Any]) -> str:
    """The scheduler's refusal, a failed restore, or the etcd container's waiting reason, when
    it is not running."""
    status = pod.get("status") or {}
    for c in status.get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("status") == "False":
            return f"{c.get('reason', 'Unschedulable')}: {c.get('message', '')}".strip()
    failed = restore_failure(pod)
    if failed:
        return failed
    waiting = (_etcd_container(pod).get("state") or {}).get("waiting") or {}
    if waiting.get("reason") and waiting.get("reason") != "ContainerCreating":
        return f"{waiting['reason']}: {waiting.get('message', '')}".strip(": ")
    return ""


def _timestamp(text: object) -> float:
    """An RFC 3339 time from the API server in seconds since the epoch; 0 when unreadable."""
    try:
        return dt.datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _on_lost_node(pod: Mapping[str, Any], nodes: Mapping[str, Mapping[str, Any]] | None) -> bool:
    node = str((pod.get("spec") or {}).get("nodeName") or "")
    if nodes is None or not node:
        return False  # not scheduled yet, or nothing known about nodes
    return node_lost(nodes.get(node))


def member_health(status: Status | None, health: Health | None) -> MemberHealth:
    if status is None:
        return MemberHealth()
    nospace = any("NOSPACE" in e for e in status.errors)
    others = [e for e in status.errors if "NOSPACE" not in e]
    # A NOSPACE alarm fails etcd's health check, but the member still reads, deletes and votes:
    # for quorum it is healthy, and the alarm is dealt with on its own (see the planner).
    alarm_only = (
        health is not None
        and health.reason.startswith("active alarm:")
        and "CORRUPT" not in health.reason
    )
    serving = health is not None and (health.healthy or (nospace and alarm_only))
    return MemberHealth(
        reachable=True,
        healthy=serving and not others and status.leader_id != 0,
        is_leader=status.is_leader,
        raft_index=status.raft_index,
        version=status.version,
        revision=status.revision,
        db_size=status.db_size,
        db_size_in_use=status.db_size_in_use,
        nospace=nospace,
        storage_version=status.storage_version,
        downgrade_target=status.downgrade_target,
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
    views: Mapping[str, Sequence[EtcdMember]], known_voters: int = 0
) -> tuple[Sequence[EtcdMember] | None, frozenset[str], str]:
    """The member list a quorum of its own voters report, the names of the pods that report
    another one (a member that lost its data and started a cluster of its own), and, when no
    list is trusted, why.

    VIEWS maps a pod name to the member list that pod's etcd answered. Trusting a single member
    would let such a rogue member make every other member look like an orphan. KNOWN_VOTERS is
    how many voters the cluster had when last seen: a list that fewer members than a quorum of
    those agree on is not trusted either, however small it says the cluster is (a lone seed that
    came back empty reports a cluster of one, and agrees with itself).
    """

    def key(ms: Sequence[EtcdMember]) -> frozenset[tuple[int, bool]]:
        return frozenset((m.id, m.is_learner) for m in ms)

    counts = Counter(key(ms) for ms in views.values())
    if not counts:
        return None, frozenset(), ""
    ranked = counts.most_common()
    best, votes = ranked[0]
    voters = sum(1 for _, learner in best if not learner)
    need = quorum(max(voters, known_voters))
    if len(ranked) > 1 and ranked[1][1] == votes:
        return None, frozenset(), "members disagree about the membership and no view leads"
    if votes < need:
        return (
            None,
            frozenset(),
            f"{votes} member(s) report a cluster of {voters} voter(s), but {need} must agree "
            f"(a quorum of the {max(voters, known_voters)} voters last seen)",
        )
    chosen = next(ms for ms in views.values() if key(ms) == best)
    return chosen, frozenset(name for name, ms in views.items() if key(ms) != best), ""


_ALPHABET = string.ascii_lowercase + string.digits


def new_member_name(cluster: str, taken: Iterable[str]) -> str:
    """`<cluster>-<5 random chars>`, unlike any name in TAKEN (pods, members, claims)."""
    used = set(taken)
    while True:
        name = f"{cluster}-{''.join(secrets.choice(_ALPHABET) for _ in range(5))}"
        if name not in used:
            return name
