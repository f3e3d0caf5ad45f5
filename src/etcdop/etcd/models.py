"""Plain results of etcd calls, so nothing outside this package sees protobuf messages."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Member:
    """One entry of the membership. NAME is empty until the member has started once."""

    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    is_learner: bool

    @property
    def hex_id(self) -> str:
        """The ID as etcdctl and etcd's logs print it."""
        return f"{self.id:x}"

    @classmethod
    def from_proto(cls, m: Any) -> Member:
        return cls(
            id=int(m.ID),
            name=str(m.name),
            peer_urls=tuple(str(u) for u in m.peerURLs),
            client_urls=tuple(str(u) for u in m.clientURLs),
            is_learner=bool(m.isLearner),
        )


@dataclass(frozen=True)
class MemberAdded:
    """What MemberAdd returns: the new member and the membership including it."""

    member: Member
    members: tuple[Member, ...]

    def initial_cluster(self, name: str) -> str:
        """The --initial-cluster value the new member (to be started as NAME) needs."""
        return initial_cluster(self.members, self.member.id, name)


class Peer(Protocol):
    """What an --initial-cluster entry is made of: an etcd member, or the operator's view of one."""

    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def peer_urls(self) -> tuple[str, ...]: ...


def initial_cluster(
    members: Iterable[Peer], new_id: int | None, new_name: str, new_url: str = ""
) -> str:
    """`name=peer_url,...` (in MEMBERS' order) for a member starting as NEW_NAME: the member
    NEW_ID of MEMBERS, or, when MEMBERS does not list it (a seed, or no member answered), one
    at NEW_URL, last. The one builder of this value in the code.

    Every other member must have a name (it started); an unnamed one means an earlier add never
    finished, and the joining member would be refused, so that is an error here.
    """
    parts: list[str] = []
    listed = False
    for m in members:
        name = new_name if m.id == new_id else m.name
        listed = listed or m.id == new_id
        if not name:
            raise ValueError(
                f"member {m.id:x} ({', '.join(m.peer_urls)}) has no name: it was added but never "
                "started; start or remove it before adding another member"
            )
        parts.extend(f"{name}={url}" for url in m.peer_urls)
    if not listed and new_url:
        parts.append(f"{new_name}={new_url}")
    return ",".join(parts)


@dataclass(frozen=True)
class Status:
    """One member's own view (Maintenance.Status): what the planner needs to judge it."""

    endpoint: str
    cluster_id: int
    member_id: int
    leader_id: int  # 0: this member knows no leader
    version: str
    storage_version: str  # "" before 3.6
    raft_index: int
    raft_term: int
    raft_applied_index: int
    db_size: int
    db_size_in_use: int
    is_learner: bool
    errors: tuple[str, ...]
    revision: int = 0
    """The store's current revision as this member has applied it."""
    downgrade_target: str = ""
    """The version a downgrade in progress goes to ("" when none; etcd 3.6+)."""

    @property
    def is_leader(self) -> bool:
        return self.member_id != 0 and self.member_id == self.leader_id

    @classmethod
    def from_proto(cls, endpoint: str, s: Any) -> Status:
        return cls(
            endpoint=endpoint,
            cluster_id=int(s.header.cluster_id),
            member_id=int(s.header.member_id),
            leader_id=int(s.leader),
            version=str(s.version),
            storage_version=str(s.storageVersion),
            raft_index=int(s.raftIndex),
            raft_term=int(s.raftTerm),
            raft_applied_index=int(s.raftAppliedIndex),
            db_size=int(s.dbSize),
            db_size_in_use=int(s.dbSizeInUse),
            is_learner=bool(s.isLearner),
            errors=tuple(str(e) for e in s.errors),
            revision=int(s.header.revision),
            downgrade_target=(
                str(s.downgradeInfo.targetVersion)
                if s.HasField("downgradeInfo") and s.downgradeInfo.enabled
                else ""
            ),
        )


@dataclass(frozen=True)
class Health:
    """Whether a member serves reads now; REASON says why not (etcd's words) when it does not."""

    endpoint: str
    healthy: bool
    took: float  # seconds
    reason: str = ""
