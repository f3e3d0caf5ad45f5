"""Harness for the EtcdCluster scenarios: the operator as a real host process, EtcdCluster objects,
and an etcd client that reaches the member pods by pod IP.

The operator runs as a developer runs it out of cluster (`etcdop operator --kubeconfig ...`), so a
test can SIGKILL it at any instant. Host processes reach pod IPs over the local bridge, so the
tests talk to etcd by pod IP and need no cluster DNS on the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from e2e.localcluster.binaries import ETCD_VERSIONS
from e2e.localcluster.kubeapi import ApiError, KubeClient
from e2e.localcluster.procs import free_port
from etcdop.etcd import EtcdClient, EtcdError, Member
from tests.waiting import eventually

REPO = Path(__file__).resolve().parents[1]
CRD_FILE = REPO / "crds" / "etcdclusters.etcdop.io.yaml"
CRD_NAME = "etcdclusters.etcdop.io"
GROUP_VERSION = "etcdop.io/v1alpha1"
ETCD_VERSION = ETCD_VERSIONS[0].removeprefix("v")  # the newest etcd line the cache holds
CLUSTER_LABEL = "etcdop.io/cluster"
CLIENT_PORT = 2379

Obj = dict[str, Any]


def etcdop_executable() -> Path:
    """The `etcdop` entry point of the interpreter running the tests (the repo's .venv)."""
    return Path(sys.executable).parent / "etcdop"


# ------------------------------------------------------------------------------- Kubernetes API


def clusters_path(ns: str, name: str = "") -> str:
    path = f"/apis/{GROUP_VERSION}/namespaces/{ns}/etcdclusters"
    return f"{path}/{name}" if name else path


async def install_crd(kube: KubeClient, within: float = 60) -> None:
    """Create or update every CRD in crds/ (EtcdCluster, EtcdBackup, ...), then wait until the
    API serves each."""
    for crd_file in sorted(CRD_FILE.parent.glob("*.yaml")):
        await _install_one_crd(kube, yaml.safe_load(crd_file.read_text()), within)


async def _install_one_crd(kube: KubeClient, crd: dict[str, Any], within: float) -> None:
    name = crd["metadata"]["name"]
    plural = crd["spec"]["names"]["plural"]
    path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    current = await kube.get(f"{path}/{name}")
    if current is None:
        status, data = await kube.call("POST", path, crd)
        if status not in (201, 409):  # 409: another session created it meanwhile
            raise ApiError("POST", path, status, data)
    else:
        crd["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        await kube.request("PUT", f"{path}/{name}", crd)

    async def established() -> bool:
        got = await kube.get(f"{path}/{name}")
        status_of = (got or {}).get("status") or {}
        conds = {c["type"]: c["status"] for c in status_of.get("conditions") or []}
        if conds.get("Established") != "True":
            return False
        status, _ = await kube.call("GET", f"/apis/{GROUP_VERSION}/{plural}")
        return status == 200

    await eventually(established, within, f"CRD {name} Established and served")


async def new_namespace(kube: KubeClient, prefix: str) -> str:
    """A fresh namespace PREFIX-xxxxxx whose default ServiceAccount exists (pods need it)."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    await kube.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                              "metadata": {"name": name}})

    async def has_sa() -> bool:
        return await kube.get(f"/api/v1/namespaces/{name}/serviceaccounts/default") is not None

    await eventually(has_sa, 60, f"serviceaccount {name}/default")
    return name


async def delete_namespace(kube: KubeClient, name: str) -> None:
    """Start deleting NAME; the namespace controller and the kubelets finish it."""
    await kube.delete(f"/api/v1/namespaces/{name}")


async def wait_namespaces_gone(kube: KubeClient, names: Sequence[str], within: float) -> None:
    """Until every namespace of NAMES is deleted (its pods' containers stopped by the kubelets),
    so a module's leftover pods never load the machine under the next module's measurements."""

    async def gone() -> bool:
        left = [n for n in names if await kube.get(f"/api/v1/namespaces/{n}") is not None]
        assert not left, f"still there: {left}"
        return True

    await eventually(gone, within, f"namespaces {list(names)} to be deleted", every=1.0)


# --------------------------------------------------------------------------------- EtcdCluster


def etcd_cluster(name: str, ns: str, size: int | None = 3, **spec: Any) -> Obj:
    """An EtcdCluster manifest; SPEC adds or overrides spec fields (camelCase, as in YAML)."""
    body: Obj = {"version": ETCD_VERSION, **spec}
    if size is not None:
        body["size"] = size
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "EtcdCluster",
        "metadata": {"name": name, "namespace": ns},
        "spec": body,
    }


async def create_cluster(kube: KubeClient, obj: Obj) -> Obj:
    return await kube.create(clusters_path(obj["metadata"]["namespace"]), obj)


async def get_cluster(kube: KubeClient, name: str, ns: str) -> Obj:
    got = await kube.get(clusters_path(ns, name))
    if got is None:
        raise AssertionError(f"EtcdCluster {ns}/{name} does not exist")
    return got


async def patch_spec(kube: KubeClient, name: str, ns: str, spec: Obj) -> Obj:
    return await kube.merge_patch(clusters_path(ns, name), {"spec": spec})


async def delete_cluster(kube: KubeClient, name: str, ns: str) -> None:
    await kube.delete(clusters_path(ns, name))


def condition(obj: Obj, type_: str) -> Obj | None:
    for c in obj.get("status", {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return None


def readiness_problems(ec: Obj, size: int) -> list[str]:
    """Why EC's status does not (yet) say SIZE ready members, one leader, Running, Available."""
    status = ec.get("status") or {}
    problems = []
    gen = ec["metadata"].get("generation")
    if status.get("observedGeneration") != gen:
        problems.append(f"observedGeneration {status.get('observedGeneration')} != {gen}")
    if status.get("readyMembers") != size:
        problems.append(f"readyMembers {status.get('readyMembers')} != {size}")
    if status.get("phase") != "Running":
        problems.append(f"phase {status.get('phase')!r} != 'Running'")
    members = status.get("members") or []
    voters = [m for m in members if not m.get("isLearner")]
    if len(voters) != size or len(members) != size:
        problems.append(f"{len(members)} members ({len(voters)} voting), want {size} voting")
    not_ready = [m.get("name") for m in members if not m.get("ready")]
    if not_ready:
        problems.append(f"members not ready: {not_ready}")
    leaders = [m.get("name") for m in members if m.get("isLeader")]
    if len(leaders) != 1:
        problems.append(f"leaders among members: {leaders}")
    available = condition(ec, "Available")
    if available is None or available.get("status") != "True":
        problems.append(f"condition Available is {available}")
    return problems


async def wait_cluster_ready(
    kube: KubeClient, name: str, ns: str, size: int, within: float = 180
) -> Obj:
    """Wait until the status shows SIZE ready voting members, one leader, phase Running and
    Available=True for the current generation; returns the EtcdCluster."""
    last: list[Obj] = []

    async def ready() -> bool:
        ec = await get_cluster(kube, name, ns)
        last[:] = [ec]
        problems = readiness_problems(ec, size)
        assert not problems, "; ".join(problems)
        return True

    await eventually(ready, within, f"EtcdCluster {ns}/{name} ready with {size} members")
    return last[0]


# ----------------------------------------------------------------------------- member pods


async def member_pods(kube: KubeClient, name: str, ns: str) -> list[Obj]:
    """The pods of cluster NAME (label etcdop.io/cluster), oldest first, deleted ones included."""
    pods = await kube.items(f"/api/v1/namespaces/{ns}/pods", f"{CLUSTER_LABEL}={name}")
    return sorted(pods, key=lambda p: (p["metadata"]["creationTimestamp"], p["metadata"]["name"]))


async def member_ids(kube: KubeClient, name: str, ns: str) -> dict[int, str]:
    """etcd member ID -> name as the members say now; an etcd failure is an AssertionError
    (for checks polled with `eventually`: the cluster may be between states)."""
    try:
        view = await observe_members(kube, name, ns)
    except EtcdError as e:
        raise AssertionError(f"no member list: {e}") from e
    return {m.id: m.name for m in view.members}


def pod_ready(pod: Obj) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in pod.get("status", {}).get("conditions") or []
    )


def pod_endpoint(pod: Obj) -> str | None:
    ip = pod.get("status", {}).get("podIP")
    if not ip or pod["metadata"].get("deletionTimestamp"):
        return None
    return f"http://{ip}:{CLIENT_PORT}"


async def member_endpoints(kube: KubeClient, name: str, ns: str) -> dict[str, str]:
    """Pod name -> client URL by pod IP, for every live pod of cluster NAME that has an IP."""
    out = {}
    for pod in await member_pods(kube, name, ns):
        endpoint = pod_endpoint(pod)
        if endpoint:
            out[pod["metadata"]["name"]] = endpoint
    return out


@contextlib.asynccontextmanager
async def etcd_client(
    kube: KubeClient, name: str, ns: str, call_timeout: float = 5.0
) -> AsyncIterator[EtcdClient]:
    """An EtcdClient over the pod IPs of cluster NAME's members as they are now."""
    endpoints = await member_endpoints(kube, name, ns)
    if not endpoints:
        raise AssertionError(f"EtcdCluster {ns}/{name} has no pod with an IP")
    async with EtcdClient(sorted(endpoints.values()), timeout=call_timeout) as client:
        yield client


@dataclass(frozen=True)
class Leader:
    """The leader as the members report it: its pod (member) name, member ID and client URL."""

    name: str
    id: int
    endpoint: str


async def etcd_leader(kube: KubeClient, name: str, ns: str, within: float = 30) -> Leader:
    """The leader of cluster NAME from etcd itself (Maintenance.Status on every member pod IP),
    not from the EtcdCluster status, which the operator refreshes at its own pace. Waits until
    every member answers, all name the same leader, and the leader is one of the pods."""
    found: list[Leader] = []

    async def agreed() -> bool:
        endpoints = await member_endpoints(kube, name, ns)
        assert endpoints, f"EtcdCluster {ns}/{name} has no pod with an IP"
        statuses = {}
        async with EtcdClient(sorted(endpoints.values()), timeout=3.0) as client:
            for pod_name, endpoint in sorted(endpoints.items()):
                try:
                    statuses[pod_name] = await client.status(endpoint)
                except EtcdError as e:
                    raise AssertionError(f"{pod_name}: no status: {e}") from e
        leaders = {s.leader_id for s in statuses.values()}
        assert len(leaders) == 1 and 0 not in leaders, (
            f"members name leaders {sorted(f'{i:x}' for i in leaders)} (0: none)"
        )
        own = [n for n, s in statuses.items() if s.is_leader]
        assert len(own) == 1, f"pods that say they lead: {own}"
        found[:] = [Leader(own[0], statuses[own[0]].member_id, endpoints[own[0]])]
        return True

    await eventually(agreed, within, f"the members of {ns}/{name} to agree on a leader")
    return found[0]


async def move_leader(kube: KubeClient, name: str, ns: str, within: float = 30) -> Leader:
    """Hand leadership from the current leader to another voter (the first by name), sent to
    the leader's own pod IP; returns the new leader once every member reports it."""
    before = await etcd_leader(kube, name, ns, within)
    ids = await member_ids(kube, name, ns)
    target = min(
        (i for i, n in ids.items() if n and i != before.id), key=lambda i: ids[i], default=None
    )
    assert target is not None, f"no other member to hand leadership to: {ids}"
    async with EtcdClient([before.endpoint], timeout=5.0) as client:
        await client.move_leader(target)

    async def moved() -> bool:
        now = await etcd_leader(kube, name, ns, within)
        assert now.id == target, f"leader is {now.name} ({now.id:x}), want {target:x}"
        return True

    await eventually(moved, within, f"leadership of {ns}/{name} to move to {target:x}")
    return await etcd_leader(kube, name, ns, within)


@dataclass
class MemberView:
    """One sample of the cluster from outside: membership, pods and each voter's health."""

    members: list[Member]
    endpoints: dict[str, str]  # pod name -> client URL by pod IP
    healthy: dict[str, bool]  # member name (or hex id when unnamed) -> healthy, voters only
    reasons: dict[str, str] = field(default_factory=dict)

    @property
    def voters(self) -> list[Member]:
        return [m for m in self.members if not m.is_learner]

    @property
    def quorum(self) -> int:
        return len(self.voters) // 2 + 1

    @property
    def healthy_voters(self) -> int:
        return sum(self.healthy.values())

    def has_quorum(self) -> bool:
        return bool(self.voters) and self.healthy_voters >= self.quorum

    def describe(self) -> str:
        parts = [
            f"{k}={'ok' if v else 'DOWN(' + self.reasons.get(k, '') + ')'}"
            for k, v in sorted(self.healthy.items())
        ]
        learners = [m.name or m.hex_id for m in self.members if m.is_learner]
        return (
            f"{self.healthy_voters}/{len(self.voters)} voters healthy (quorum {self.quorum}): "
            f"{', '.join(parts)}; learners {learners}; pods {sorted(self.endpoints)}"
        )


async def observe_members(
    kube: KubeClient, name: str, ns: str, call_timeout: float = 3.0
) -> MemberView:
    """Member list through any pod, then the health of every voting member through its own pod
    IP; raises EtcdError when no pod answers the member list."""
    endpoints = await member_endpoints(kube, name, ns)
    if not endpoints:
        raise AssertionError(f"EtcdCluster {ns}/{name} has no pod with an IP")
    async with EtcdClient(sorted(endpoints.values()), timeout=call_timeout) as client:
        members = await client.member_list()
        view = MemberView(members, endpoints, {})
        checks = []
        for m in view.voters:
            key = m.name or m.hex_id
            endpoint = endpoints.get(m.name) if m.name else None
            if endpoint is None:
                view.healthy[key] = False
                view.reasons[key] = "no pod with an IP"
                continue
            checks.append((key, client.health(endpoint, within=call_timeout)))
        for key, result in zip(
            [k for k, _ in checks], await asyncio.gather(*(c for _, c in checks)), strict=True
        ):
            view.healthy[key] = result.healthy
            if not result.healthy:
                view.reasons[key] = result.reason
    return view


async def membership_problems(kube: KubeClient, name: str, ns: str, size: int) -> list[str]:
    """Why etcd's membership and the pods do not match one to one at SIZE voting members, all
    healthy and agreeing on one membership (orphan members, orphan pods, learners left)."""
    try:
        view = await observe_members(kube, name, ns)
    except EtcdError as e:
        return [f"no member list: {e}"]
    problems = []
    pods = {p["metadata"]["name"]: p for p in await member_pods(kube, name, ns)}
    names = {m.name for m in view.members}
    orphan_members = [m.name or f"unnamed {m.hex_id}" for m in view.members if m.name not in pods]
    if orphan_members:
        problems.append(f"members without a pod: {orphan_members}")
    orphan_pods = sorted(set(pods) - names)
    if orphan_pods:
        problems.append(f"pods that are not members: {orphan_pods}")
    learners = [m.name or m.hex_id for m in view.members if m.is_learner]
    if learners:
        problems.append(f"learners left: {learners}")
    if len(view.voters) != size:
        problems.append(f"{len(view.voters)} voting members, want {size}")
    if view.healthy_voters != len(view.voters):
        problems.append(f"not all healthy: {view.describe()}")
    not_ready = sorted(n for n, p in pods.items() if not pod_ready(p))
    if not_ready:
        problems.append(f"pods not Ready: {not_ready}")
    # Every member must see the same membership: a member that bootstrapped a cluster of its own
    # (a split brain) would answer healthy on its own.
    ids = {m.id for m in view.members}
    for pod_name, endpoint in sorted(view.endpoints.items()):
        try:
            async with EtcdClient([endpoint], timeout=3.0) as one:
                theirs = {m.id for m in await one.member_list()}
        except EtcdError as e:
            problems.append(f"{pod_name}: member list failed: {e}")
            continue
        if theirs != ids:
            problems.append(
                f"{pod_name} sees members {sorted(f'{i:x}' for i in theirs)}, "
                f"others {sorted(f'{i:x}' for i in ids)}"
            )
    return problems


async def wait_membership_matches(
    kube: KubeClient, name: str, ns: str, size: int, within: float = 90
) -> None:
    async def matches() -> bool:
        problems = await membership_problems(kube, name, ns, size)
        assert not problems, "; ".join(problems)
        return True

    await eventually(matches, within, f"etcd membership of {ns}/{name} to match its {size} pods")


# ------------------------------------------------------------------------- the operator process


class OperatorProcess:
    """One `etcdop operator` process on the host; its stdout and stderr (JSON lines) go to LOG_PATH.

    It runs in a session of its own, so stop() and kill() reach it and nothing else.
    """

    def __init__(
        self,
        kubeconfig: Path,
        log_dir: Path,
        identity: str,
        *,
        namespace: str | None = None,
        lease_namespace: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.kubeconfig = kubeconfig
        self.identity = identity
        self.namespace = namespace
        self.lease_namespace = lease_namespace
        self.extra_args = tuple(extra_args)
        self.log_path = log_dir / f"operator-{identity}.log"
        self.metrics_port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def argv(self) -> list[str]:
        argv = [
            str(etcdop_executable()), "operator",
            "--kubeconfig", str(self.kubeconfig),
            "--metrics-port", str(self.metrics_port),
            "--id", self.identity,
        ]
        if self.namespace:
            argv += ["--namespace", self.namespace]
        if self.lease_namespace:
            argv += ["--lease-namespace", self.lease_namespace]
        return argv + list(self.extra_args)

    def start(self) -> None:
        """Start (or restart) the process; the log file keeps every run, separated by a header."""
        if self.alive:
            raise RuntimeError(f"operator {self.identity} already runs (pid {self.pid})")
        self.metrics_port = free_port()
        self.starts += 1
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig), PYTHONUNBUFFERED="1")
        with self.log_path.open("ab") as log:
            log.write(f"# --- start #{self.starts}: {' '.join(self.argv())}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env, cwd=REPO, start_new_session=True,
            )

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc else None

    def _signal_group(self, sig: int) -> None:
        assert self._proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would: no cleanup, no lease release."""
        if self._proc is None:
            return
        self._signal_group(signal.SIGKILL)
        self._proc.wait(timeout=10)

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after GRACE seconds; returns the exit status."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self._proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self._proc.wait(timeout=10)
        return self._proc.returncode

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def records(self, run: int | None = None) -> list[Obj]:
        """The JSON log records (of run number RUN, default every run); other lines skipped."""
        out: list[Obj] = []
        current = 0
        for line in self.log_text().splitlines():
            if line.startswith("# --- start #"):
                current = int(line.split("#")[2].split(":")[0])
                continue
            if run is not None and current != run:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
        return out

    async def metrics(self) -> str:
        async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
            r = await client.get(f"http://127.0.0.1:{self.metrics_port}/metrics")
            r.raise_for_status()
            return r.text

    async def wait_serving(self, within: float = 60) -> None:
        """Until its metrics endpoint answers; fails at once, with its log, if it exits."""

        async def serving() -> bool:
            if not self.alive:
                raise RuntimeError(
                    f"operator {self.identity} exited with {self.returncode}:\n{self.tail(40)}"
                )
            try:
                await self.metrics()
            except httpx.HTTPError:
                return False
            return True

        await eventually(serving, within, f"operator {self.identity} serving metrics")


LIVE_OPERATORS: list[OperatorProcess] = []
"""Operators started by `Operators` and not yet stopped (a failed test shows their logs)."""


class Operators:
    """Starts operator processes for one test or module and stops every one of them after."""

    def __init__(self, kubeconfig: Path, log_dir: Path) -> None:
        self.kubeconfig = kubeconfig
        self.log_dir = log_dir
        self.started: list[OperatorProcess] = []

    def start(
        self,
        identity: str,
        *,
        namespace: str | None = None,
        lease_namespace: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> OperatorProcess:
        op = OperatorProcess(
            self.kubeconfig, self.log_dir, identity,
            namespace=namespace, lease_namespace=lease_namespace, extra_args=extra_args,
        )
        op.start()
        self.started.append(op)
        LIVE_OPERATORS.append(op)
        return op

    def stop_all(self) -> None:
        for op in self.started:
            op.stop()
            if op in LIVE_OPERATORS:
                LIVE_OPERATORS.remove(op)


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sum of NAME's samples in Prometheus text TEXT whose labels include LABELS."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, label_text = head.partition("{")
        if metric != name:
            continue
        if all(f'{k}="{v}"' in label_text for k, v in labels.items()):
            total += float(value)
    return total


# --------------------------------------------------------------------------------- leases


async def leases(kube: KubeClient, ns: str) -> list[Obj]:
    return await kube.items(f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases")


async def lease_holder(kube: KubeClient, ns: str) -> str | None:
    """holderIdentity of the one Lease in NS (the tests give each election a namespace)."""
    found = await leases(kube, ns)
    if not found:
        return None
    names = [x["metadata"]["name"] for x in found]
    assert len(found) == 1, f"expected one Lease in {ns}, found {names}"
    holder: str | None = found[0].get("spec", {}).get("holderIdentity")
    return holder


async def wait_lease_holder(kube: KubeClient, ns: str, identity: str, within: float = 60) -> Obj:
    async def held() -> bool:
        holder = await lease_holder(kube, ns)
        assert holder == identity, f"holder is {holder!r}"
        return True

    await eventually(held, within, f"the Lease in {ns} to name {identity!r}")
    return (await leases(kube, ns))[0]


def product_image() -> str:
    """The image that runs THIS checkout's code in pods (the operator, the agent): the one
    `make image` built from the checkout's Dockerfile, which every node imports at start.
    Refuses a tarball older than the code, whose pods would run old code."""
    from e2e.localcluster.kubelet.images import PRODUCT_IMAGE, PRODUCT_TARBALL

    if not PRODUCT_TARBALL.is_file():
        raise RuntimeError(f"{PRODUCT_TARBALL} is missing: run `make image` first")
    src = Path(__file__).resolve().parents[1] / "src" / "etcdop"
    newest = max(p.stat().st_mtime for p in src.rglob("*.py"))
    if newest > PRODUCT_TARBALL.stat().st_mtime:
        raise RuntimeError(
            f"{PRODUCT_TARBALL} is older than the code in {src}: pods would run old code; "
            "run `make image` (a reused cluster's nodes import the new one when it is next up)"
        )
    return PRODUCT_IMAGE
