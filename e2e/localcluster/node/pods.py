"""Pure pieces of running a pod: env resolution, container state records and the pod status they
add up to. No I/O here, so the rules (which Kubernetes documents precisely) are unit-tested."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

Kind = Literal["init", "sidecar", "main"]


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- env -------------------------------------------------------------------------------------

_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: unknown references stay as written, ``$$`` escapes."""

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env.get(name, m.group(0))

    return _VAR.sub(repl, text)


@dataclass(frozen=True)
class PodFacts:
    """What fieldRef and the status need beyond the pod object itself."""

    pod_ip: str
    host_ip: str
    node_name: str


def field_ref(pod: Mapping[str, Any], path: str, facts: PodFacts) -> str:
    meta = pod.get("metadata", {})
    spec = pod.get("spec", {})
    simple: dict[str, str] = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": facts.node_name,
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.podIP": facts.pod_ip,
        "status.podIPs": facts.pod_ip,
        "status.hostIP": facts.host_ip,
        "status.hostIPs": facts.host_ip,
    }
    if path in simple:
        return simple[path]
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if m:
        return str(meta.get(m.group(1), {}).get(m.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1], {})
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    raise ValueError(f"fieldRef {path!r} is not supported by the local node")


class EnvError(Exception):
    """A reference that cannot be resolved: the container waits with CreateContainerConfigError."""


def resolve_env(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    facts: PodFacts,
    secrets: Mapping[str, Mapping[str, str] | None],
    configmaps: Mapping[str, Mapping[str, str] | None],
    base: Mapping[str, str],
) -> dict[str, str]:
    """BASE (service env, PATH) then envFrom then env, each value expanded against what precedes
    it, as the kubelet does. SECRETS/CONFIGMAPS map names to decoded data (None: not found)."""
    env: dict[str, str] = dict(base)

    def source(
        kind: str, objs: Mapping[str, Mapping[str, str] | None], ref: Mapping[str, Any]
    ) -> Mapping[str, str] | None:
        data = objs.get(ref.get("name", ""))
        if data is None and not ref.get("optional", False):
            raise EnvError(f'{kind} "{ref.get("name")}" not found')
        return data

    for ef in container.get("envFrom", []) or []:
        prefix = ef.get("prefix", "")
        if "configMapRef" in ef:
            data = source("configmap", configmaps, ef["configMapRef"])
        elif "secretRef" in ef:
            data = source("secret", secrets, ef["secretRef"])
        else:
            continue
        for k, v in (data or {}).items():
            env[prefix + k] = v

    for ev in container.get("env", []) or []:
        name = ev["name"]
        if "valueFrom" not in ev:
            env[name] = expand(ev.get("value", "") or "", env)
            continue
        vf = ev["valueFrom"]
        if "fieldRef" in vf:
            env[name] = field_ref(pod, vf["fieldRef"]["fieldPath"], facts)
        elif "secretKeyRef" in vf or "configMapKeyRef" in vf:
            is_secret = "secretKeyRef" in vf
            ref = vf["secretKeyRef" if is_secret else "configMapKeyRef"]
            kind = "secret" if is_secret else "configmap"
            data = source(kind, secrets if is_secret else configmaps, ref)
            key = ref.get("key", "")
            if data is not None and key in data:
                env[name] = data[key]
            elif not ref.get("optional", False):
                raise EnvError(f'couldn\'t find key {key} in {kind} "{ref.get("name")}"')
        elif "resourceFieldRef" in vf:
            env[name] = resource_field(container, vf["resourceFieldRef"])
    return env


_SUFFIX = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9}


def resource_field(container: Mapping[str, Any], ref: Mapping[str, Any]) -> str:
    """limits/requests as integers in the divisor's unit (rounded up), like the downward API;
    an unset limit reports the node's allocatable, which we approximate with a large value."""
    section, _, res = ref.get("resource", "").partition(".")
    value = (container.get("resources", {}) or {}).get(section, {}).get(res)
    if value is None:
        return "0" if section == "requests" else str(2**31)
    divisor = ref.get("divisor", "1")
    return str(-(-quantity(str(value)) // max(1, quantity(str(divisor)))))


def quantity(text: str) -> int:
    """A resource quantity in base units (cpu: millicores are rounded up to whole cores)."""
    if text.endswith("m"):
        return -(-int(text[:-1]) // 1000)
    for suffix, mult in _SUFFIX.items():
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * mult)
    return int(float(text))


def referenced_names(containers: list[Mapping[str, Any]]) -> tuple[set[str], set[str]]:
    """(secret names, configmap names) the env of CONTAINERS needs, to fetch them beforehand."""
    secrets: set[str] = set()
    cms: set[str] = set()
    for c in containers:
        for ef in c.get("envFrom", []) or []:
            if "secretRef" in ef:
                secrets.add(ef["secretRef"].get("name", ""))
            if "configMapRef" in ef:
                cms.add(ef["configMapRef"].get("name", ""))
        for ev in c.get("env", []) or []:
            vf = ev.get("valueFrom") or {}
            if "secretKeyRef" in vf:
                secrets.add(vf["secretKeyRef"].get("name", ""))
            if "configMapKeyRef" in vf:
                cms.add(vf["configMapKeyRef"].get("name", ""))
    return secrets, cms


# -- container records -----------------------------------------------------------------------


LOST_EXIT_CODE = 137  # what a container killed with its node reports: 128 + SIGKILL

# The kubelet's FallbackToLogsOnError: the tail of the log, at most 80 lines and 2048 bytes.
MESSAGE_LOG_LINES = 80
MESSAGE_LOG_BYTES = 2048
MESSAGE_FILE_BYTES = 4096  # the kubelet reads at most this much of terminationMessagePath


def log_tail(data: bytes, lines: int = MESSAGE_LOG_LINES, limit: int = MESSAGE_LOG_BYTES) -> str:
    """The last LINES lines of DATA, then its last LIMIT bytes (the kubelet's circular buffer)."""
    kept = data.splitlines(keepends=True)[-lines:]
    return b"".join(kept)[-limit:].decode(errors="replace")


def termination_message(file_data: bytes, policy: str, exit_code: int, log: bytes) -> str:
    """status.containerStatuses[].state.terminated.message as the kubelet fills it: the
    terminationMessagePath file when the container wrote one, else (FallbackToLogsOnError and
    a failed run) the tail of its log."""
    text = file_data[:MESSAGE_FILE_BYTES].decode(errors="replace")
    if text:
        return text
    if policy == "FallbackToLogsOnError" and exit_code != 0:
        return log_tail(log)
    return ""


@dataclass
class ContainerRecord:
    """The agent's memory of one container, from which its containerStatus is written."""

    name: str
    image: str
    kind: Kind
    state: Literal["waiting", "running", "terminated"] = "waiting"
    reason: str = "ContainerCreating"
    message: str = ""
    started_at: str = ""
    finished_at: str = ""
    exit_code: int = 0
    restart_count: int = 0
    ready: bool = False
    started: bool = False
    container_id: str = ""
    last_terminated: dict[str, Any] | None = None
    completed: bool = False  # an init container that exited 0: the next one may start
    wants_restart: bool = True  # False once a terminated container will not run again

    def waiting(self, reason: str, message: str = "") -> None:
        self.state, self.reason, self.message = "waiting", reason, message
        self.ready = False
        self.started = False

    def running(self, container_id: str) -> None:
        self.state, self.reason, self.message = "running", "", ""
        self.started_at = now_iso()
        self.container_id = container_id
        self.ready = False

    def terminated(self, exit_code: int, reason: str | None = None, message: str = "") -> None:
        self.state = "terminated"
        self.exit_code = exit_code
        self.reason = reason or ("Completed" if exit_code == 0 else "Error")
        self.message = message
        self.finished_at = now_iso()
        self.ready = False
        self.started = False

    def terminated_dict(self) -> dict[str, Any]:
        code = self.exit_code if self.exit_code >= 0 else 128 - self.exit_code
        d: dict[str, Any] = {
            "exitCode": code,
            "reason": self.reason,
            "startedAt": self.started_at or None,
            "finishedAt": self.finished_at or None,
        }
        if self.exit_code < 0:
            d["signal"] = -self.exit_code
        if self.message:
            d["message"] = self.message
        if self.container_id:
            d["containerID"] = self.container_id
        return d

    def retire(self) -> None:
        """The terminated run becomes lastState (shown while the next one waits or runs)."""
        if self.state == "terminated":
            self.last_terminated = self.terminated_dict()

    def next_attempt(self) -> None:
        """A new run replaces a dead one: restartCount is the kubelet's attempt number, so it
        grows when the next container is created, not while it waits in CrashLoopBackOff."""
        self.retire()
        self.restart_count += 1

    def resume(self, previous: Mapping[str, Any] | None) -> bool:
        """Take over this container's history from the status a previous life of the node wrote
        (the kubelet reads it back from the runtime after a reboot). A run the status still shows
        as running died with the node: it is recorded terminated with 137 (SIGKILL), reason
        Error, since no process survives a node restart. Returns whether it had ever run."""
        if not previous:
            return False
        state = previous.get("state") or {}
        self.restart_count = int(previous.get("restartCount", 0) or 0)
        self.last_terminated = (previous.get("lastState") or {}).get("terminated")
        self.container_id = str(previous.get("containerID", "") or "")
        if state.get("running") is not None:
            self.started_at = str(state["running"].get("startedAt") or "")
            self.terminated(LOST_EXIT_CODE, "Error")
            return True
        if state.get("terminated") is not None:
            t = state["terminated"]
            code = int(t.get("exitCode", 0))
            self.state = "terminated"
            self.exit_code = -int(t["signal"]) if t.get("signal") else code
            self.reason = str(t.get("reason") or ("Completed" if code == 0 else "Error"))
            self.message = str(t.get("message") or "")
            self.started_at = str(t.get("startedAt") or "")
            self.finished_at = str(t.get("finishedAt") or now_iso())
            self.container_id = str(t.get("containerID") or self.container_id)
            self.ready = self.started = False
            return True
        return bool(self.last_terminated) or self.restart_count > 0 or bool(self.container_id)

    def status(self) -> dict[str, Any]:
        state: dict[str, Any]
        if self.state == "running":
            state = {"running": {"startedAt": self.started_at}}
        elif self.state == "terminated":
            state = {"terminated": self.terminated_dict()}
        else:
            w: dict[str, Any] = {"reason": self.reason}
            if self.message:
                w["message"] = self.message
            state = {"waiting": w}
        d: dict[str, Any] = {
            "name": self.name,
            "image": self.image,
            "imageID": f"local://{self.image}",
            "ready": self.ready,
            "started": self.started,
            "restartCount": self.restart_count,
            "state": state,
            "lastState": {"terminated": self.last_terminated} if self.last_terminated else {},
        }
        if self.container_id:
            d["containerID"] = self.container_id
        return d


@dataclass
class PodRecord:
    uid: str
    restart_policy: str
    init: list[ContainerRecord] = field(default_factory=list)  # init and sidecars, in order
    main: list[ContainerRecord] = field(default_factory=list)
    pod_ip: str = ""
    host_ip: str = ""
    start_time: str = ""
    failed_reason: str = ""  # a pod-level failure (init container failed with Never)


# -- status ----------------------------------------------------------------------------------


def pod_phase(rec: PodRecord) -> str:
    """Pending until the main containers have started; Succeeded/Failed once they are all done
    for good (per restartPolicy); Running otherwise."""
    if rec.failed_reason:
        return "Failed"
    if not rec.main or any(
        c.state == "waiting" and c.restart_count == 0 and not c.started_at for c in rec.main
    ):
        return "Pending"
    if all(c.state == "terminated" and not c.wants_restart for c in rec.main):
        return "Succeeded" if all(c.exit_code == 0 for c in rec.main) else "Failed"
    return "Running"


def initialized(rec: PodRecord) -> bool:
    return all(c.completed or (c.kind == "sidecar" and c.started) for c in rec.init)


def _cond(
    type_: str, ok: bool, previous: Mapping[str, Mapping[str, Any]], reason: str = ""
) -> dict[str, Any]:
    status = "True" if ok else "False"
    prev = previous.get(type_)
    since = prev.get("lastTransitionTime") if prev and prev.get("status") == status else None
    d: dict[str, Any] = {
        "type": type_,
        "status": status,
        "lastProbeTime": None,
        "lastTransitionTime": since or now_iso(),
    }
    if not ok and reason:
        d["reason"] = reason
    return d


OWN_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")


def pod_status(rec: PodRecord, current: Mapping[str, Any]) -> dict[str, Any]:
    """The whole status we own. CURRENT is the pod's status as last seen: conditions other
    parts of the system own (PodScheduled, DisruptionTarget) are kept as they are."""
    prev = {c.get("type", ""): c for c in current.get("conditions", []) or []}
    phase = pod_phase(rec)
    running_main = [c for c in rec.main]
    containers_ready = bool(running_main) and all(c.ready for c in running_main)
    sidecars_ready = all(c.ready for c in rec.init if c.kind == "sidecar")
    init_done = initialized(rec)
    not_ready_reason = "PodCompleted" if phase in ("Succeeded", "Failed") else "ContainersNotReady"
    conds: list[dict[str, Any]] = [c for t, c in prev.items() if t not in OWN_CONDITIONS]
    conds.append(_cond("PodReadyToStartContainers", bool(rec.pod_ip), prev))
    conds.append(_cond("Initialized", init_done, prev, "ContainersNotInitialized"))
    conds.append(
        _cond("ContainersReady", containers_ready and sidecars_ready, prev, not_ready_reason)
    )
    conds.append(
        _cond("Ready", containers_ready and sidecars_ready and init_done, prev, not_ready_reason)
    )
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": conds,
        "containerStatuses": [c.status() for c in rec.main],
        "initContainerStatuses": [c.status() for c in rec.init],
    }
    if rec.failed_reason:
        status["reason"] = rec.failed_reason
    if rec.host_ip:
        status["hostIP"] = rec.host_ip
        status["hostIPs"] = [{"ip": rec.host_ip}]
    if rec.pod_ip:
        status["podIP"] = rec.pod_ip
        status["podIPs"] = [{"ip": rec.pod_ip}]
    if rec.start_time:
        status["startTime"] = rec.start_time
    return status


def status_digest(status: Mapping[str, Any]) -> Any:
    """What of a pod status we own, without timestamps: equal digests need no patch. Comparing
    against the API's copy (not our last write) undoes others' edits, such as the node-lifecycle
    controller marking pods unready while a Node was silent."""

    def containers(key: str) -> list[Any]:
        out = []
        for c in status.get(key, []) or []:
            state = c.get("state", {}) or {}
            kind = next(iter(state), "")
            detail = state.get(kind) or {}
            out.append(
                (
                    c.get("name"),
                    c.get("ready"),
                    c.get("started"),
                    c.get("restartCount"),
                    kind,
                    detail.get("reason"),
                    detail.get("message"),
                    detail.get("exitCode"),
                    c.get("containerID"),
                )
            )
        return out

    conds = sorted(
        (c.get("type"), c.get("status"))
        for c in status.get("conditions", []) or []
        if c.get("type") in OWN_CONDITIONS
    )
    return (
        status.get("phase"),
        status.get("podIP"),
        status.get("reason"),
        conds,
        containers("containerStatuses"),
        containers("initContainerStatuses"),
    )


# -- restarts --------------------------------------------------------------------------------

BACKOFF_INITIAL = 10.0
BACKOFF_MAX = 300.0
BACKOFF_RESET_AFTER = 600.0


def restart_delay(
    consecutive_failures: int, initial: float = BACKOFF_INITIAL, cap: float = BACKOFF_MAX
) -> float:
    """The kubelet's crash-loop backoff: the first restart is immediate, then 10 s doubling up to
    5 min. The caller resets CONSECUTIVE_FAILURES after a container ran for 10 minutes."""
    if consecutive_failures <= 1:
        return 0.0
    return min(cap, initial * float(2 ** (consecutive_failures - 2)))


def should_restart(kind: Kind, restart_policy: str, exit_code: int) -> bool:
    if kind == "sidecar":
        return True
    if kind == "init":
        return exit_code != 0 and restart_policy != "Never"
    if restart_policy == "Always":
        return True
    if restart_policy == "OnFailure":
        return exit_code != 0
    return False
