"""The status an agent's answer leads to (pure): what a person reads in `kubectl get etcdbak`."""

from __future__ import annotations

import dataclasses

from etcdop.api.etcdbackup import EtcdBackupStatus
from etcdop.api.etcdcluster import Condition
from etcdop.operator.etcdbackup.agentclient import AgentReply


def with_condition(st: EtcdBackupStatus, c: Condition, now: str) -> EtcdBackupStatus:
    """ST with condition C replacing the one of its type (transition time kept if unchanged)."""
    before = next((p for p in st.conditions if p.type == c.type), None)
    when = before.last_transition_time if before and before.status == c.status else now
    c = dataclasses.replace(c, last_transition_time=when)
    rest = tuple(p for p in st.conditions if p.type != c.type)
    return dataclasses.replace(st, conditions=(*rest, c))


def succeeded(st: EtcdBackupStatus, body: dict[str, object], now: str) -> EtcdBackupStatus:
    meta = body.get("backup")
    m = meta if isinstance(meta, dict) else {}
    st = dataclasses.replace(
        st,
        phase="Succeeded",
        reason="",
        message=f"snapshot of revision {m.get('revision')} stored ({m.get('size')} bytes)",
        snapshot_key=str(m.get("snapshotKey", "")),
        metadata_key=str(body.get("metadataKey", "")),
        size=int(str(m.get("size", 0))),
        sha256=str(m.get("sha256", "")),
        revision=int(str(m.get("revision", 0))),
        key_count=int(str(m.get("keyCount", 0))),
        etcd_version=str(m.get("etcdVersion", "")),
        cluster_id=str(m.get("clusterId", "")),
        member=str(m.get("member", st.member)),
        completion_time=now,
    )
    return with_condition(
        st, Condition(type="Complete", status="True", reason="Succeeded", message=st.message), now
    )


def failed(st: EtcdBackupStatus, reason: str, message: str, now: str) -> EtcdBackupStatus:
    st = dataclasses.replace(
        st, phase="Failed", reason=reason, message=message, completion_time=now
    )
    return with_condition(
        st, Condition(type="Complete", status="False", reason=reason, message=message), now
    )


def drilled(st: EtcdBackupStatus, reply: AgentReply, now: str) -> EtcdBackupStatus:
    """The drill's verdict; an agent that could not run it leaves `verified` unset (retried)."""
    if reply.status != 200:
        st = dataclasses.replace(st, verify_attempts=st.verify_attempts + 1)
        return with_condition(
            st,
            Condition(
                type="Verified",
                status="Unknown",
                reason=reply.reason,
                message=f"the restore drill could not run: {reply.message}",
            ),
            now,
        )
    ok = bool(reply.body.get("verified"))
    checked = str(reply.body.get("checkedAt") or now)
    if ok:
        message = (
            f"restored with etcdutl: revision {reply.body.get('revision')}, "
            f"{reply.body.get('keyCount')} keys, as the metadata says"
        )
        cond = Condition(type="Verified", status="True", reason="DrillPassed", message=message)
    else:
        cond = Condition(
            type="Verified",
            status="False",
            reason=str(reply.body.get("reason") or "DrillFailed"),
            message=str(reply.body.get("message") or "the restore drill failed"),
        )
    st = dataclasses.replace(st, verified=ok, verified_at=checked)
    return with_condition(st, cond, now)
