"""The objects an EtcdCluster owns, and reading pods and members back into the planner's terms."""

from __future__ import annotations

from typing import Any

from etcdop.api import EtcdCluster
from etcdop.etcd import Health, Status, initial_cluster
from etcdop.etcd import Member as EtcdMember
from etcdop.operator import manifests, observe
from etcdop.operator.model import PodPhase


def cluster(**spec: Any) -> EtcdCluster:
    return EtcdCluster.from_dict({
        "metadata": {"name": "demo", "namespace": "ns", "uid": "u-1", "generation": 2},
        "spec": {"size": 3, "version": "3.6.16", **spec},
    })


def test_member_pod_runs_etcd_of_the_spec_version_with_stable_names() -> None:
    ec = cluster()
    pod = manifests.member_pod(ec, "demo-abcde", "demo-abcde=http://x:2380", "new", "cluster.local")
    c = pod["spec"]["containers"][0]
    assert c["image"] == "gcr.io/etcd-development/etcd:v3.6.16"
    # the state is read from the annotation at every start, so the operator can change it
    assert "--initial-cluster-state=$(INITIAL_CLUSTER_STATE)" in c["args"]
    env = next(e for e in c["env"] if e["name"] == "INITIAL_CLUSTER_STATE")
    assert env["name"] == "INITIAL_CLUSTER_STATE"
    assert env["valueFrom"]["fieldRef"]["fieldPath"] == (
        f"metadata.annotations['{manifests.ANN_INITIAL_STATE}']")
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert "--quota-backend-bytes=2147483648" in c["args"]
    assert "--auto-compaction-mode=periodic" in c["args"]
    assert "--auto-compaction-retention=1h" in c["args"]
    assert ("--initial-advertise-peer-urls=http://demo-abcde.demo-peer.ns.svc.cluster.local:2380"
            in c["args"])
    assert pod["spec"]["hostname"] == "demo-abcde"
    assert pod["spec"]["subdomain"] == "demo-peer"
    assert pod["metadata"]["labels"][manifests.LABEL_CLUSTER] == "demo"
    assert pod["metadata"]["annotations"][manifests.ANN_INITIAL_STATE] == "new"
    owner = pod["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("EtcdCluster", "u-1", True)
    assert pod["spec"]["volumes"][0] == {"name": "data", "emptyDir": {}}
    assert "podAntiAffinity" in pod["spec"]["affinity"]


def test_claims_and_pod_template_overrides() -> None:
    ec = cluster(
        storage={"persistentVolumeClaim": {"size": "1Gi", "storageClassName": "local"}},
        image="quay.io/coreos/etcd",
        podTemplate={"nodeSelector": {"disk": "ssd"}, "labels": {"team": "a"},
                     "priorityClassName": "high"},
    )
    pod = manifests.member_pod(ec, "demo-x", "", "existing", "cluster.local")
    assert pod["spec"]["volumes"][0]["persistentVolumeClaim"] == {"claimName": "demo-x"}
    assert pod["spec"]["containers"][0]["image"] == "quay.io/coreos/etcd:v3.6.16"
    assert pod["spec"]["nodeSelector"] == {"disk": "ssd"}
    assert pod["spec"]["priorityClassName"] == "high"
    assert pod["metadata"]["labels"]["team"] == "a"
    claim = manifests.data_claim(ec, "demo-x")
    assert claim is not None
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert claim["spec"]["storageClassName"] == "local"
    assert manifests.data_claim(cluster(), "demo-x") is None
    # Retain (the default): the claim outlives the cluster, and says which cluster made it
    assert "ownerReferences" not in claim["metadata"]
    assert claim["metadata"]["labels"][manifests.LABEL_CLUSTER_UID] == "u-1"
    deleting = cluster(storage={"persistentVolumeClaim": {"size": "1Gi", "whenDeleted": "Delete"}})
    owned = manifests.data_claim(deleting, "demo-x")
    assert owned is not None and owned["metadata"]["ownerReferences"][0]["uid"] == "u-1"


def test_pdb_allows_only_what_quorum_spares() -> None:
    assert manifests.pod_disruption_budget(cluster(size=5))["spec"]["maxUnavailable"] == 2
    assert manifests.pod_disruption_budget(cluster(size=1))["spec"]["maxUnavailable"] == 0
    peer = manifests.peer_service(cluster())
    assert peer["spec"]["clusterIP"] == "None"
    assert peer["spec"]["publishNotReadyAddresses"] is True


def test_member_name_comes_from_the_peer_url_not_etcds_name() -> None:
    urls = ("http://demo-abcde.demo-peer.ns.svc.cluster.local:2380",)
    assert observe.member_name(urls, "demo") == "demo-abcde"
    assert observe.member_name(("http://10.0.0.1:2380",), "demo") == ""
    assert observe.member_name(("http://x.other-peer.ns.svc:2380",), "demo") == ""


def pod(name: str, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "annotations": {manifests.ANN_VERSION: "3.6.16"}},
            "status": status}


def etcd_status(ready: bool = False, restarts: int = 0, **states: Any) -> list[dict[str, Any]]:
    return [{"name": "etcd", "ready": ready, "restartCount": restarts, **states}]


TOCOMMIT = ("panic: tocommit(12) is out of range [lastIndex(0)]. Was the raft log corrupted, "
            "truncated, or lost?")


def test_pod_view_reads_phase_readiness_and_version() -> None:
    ready = observe.member_pod(pod("a", phase="Running",
                                   conditions=[{"type": "Ready", "status": "True"}]))
    assert (ready.phase, ready.ready, ready.data_lost, ready.version) == (
        PodPhase.RUNNING, True, False, "3.6.16")
    assert observe.member_pod(pod("d", phase="Weird")).phase is PodPhase.UNKNOWN


def test_a_pod_is_kubelet_synced_once_its_generation_is_observed() -> None:
    behind = pod("a", phase="Running", observedGeneration=1)
    behind["metadata"]["generation"] = 2
    assert not observe.member_pod(behind).kubelet_synced
    behind["status"]["observedGeneration"] = 2
    assert observe.member_pod(behind).kubelet_synced
    older_kubelet = pod("b", phase="Running")  # no observedGeneration before Kubernetes 1.33
    older_kubelet["metadata"]["generation"] = 2
    assert observe.member_pod(older_kubelet).kubelet_synced


def test_a_restart_history_is_not_data_loss() -> None:
    """Was: 3 restarts and a non-zero last exit were taken as DataLost, so a member that had been
    OOM-killed or liveness-killed a few times was removed and its claim deleted."""
    oom = observe.member_pod(pod("b", phase="Running", containerStatuses=etcd_status(
        restarts=7,
        state={"waiting": {"reason": "CrashLoopBackOff"}},
        lastState={"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
    )))
    assert not oom.data_lost
    assert "OOMKilled, exit code 137, 7 restart(s)" in oom.last_error
    healthy_again = observe.member_pod(pod("c", phase="Running", containerStatuses=etcd_status(
        ready=True, restarts=3, lastState={"terminated": {"exitCode": 2, "message": TOCOMMIT}},
    )))
    assert not healthy_again.data_lost  # it runs and is ready: whatever it said once is over


HOST = "life-{:05d}.life-peer.ec-life-1c4b03.svc.cluster.local"


def validation_failure(members: int) -> str:
    """etcd's fatal line when a member with no write-ahead log finds the membership changed
    since its pod was made (as seen in CI, 3.6.16), cut as the kubelet cuts it: 2048 bytes."""
    listed = " ".join(
        f"&{{ID:{i:016x} RaftAttributes:{{PeerURLs:[http://{HOST.format(i)}:2380]"
        f" IsLearner:false}} Attributes:{{Name:life-{i:05d} "
        f"ClientURLs:[http://{HOST.format(i)}:2379]}}}}"
        for i in range(members)
    )
    last = f"http://{HOST.format(members - 1)}:2380"
    error = (
        f"error validating peerURLs {{ClusterID:d14bc1f0ab66b54f Members:[{listed}] "
        f"RemovedMemberIDs:[]}}: PeerURLs: no match found for existing member "
        f"({members - 1:016x}, [{last}]), last resolver error (failed to resolve \\\"{last}\\\" "
        "(context deadline exceeded))"
    )
    trace = ("go.etcd.io/etcd/server/v3/etcdmain.startEtcdOrProxyV2\\n\\tgo.etcd.io/etcd/server/"
             "v3@v3.6.16/etcdmain/etcd.go:183\\ngo.etcd.io/etcd/server/v3/etcdmain.Main\\n\\t"
             "go.etcd.io/etcd/server/v3@v3.6.16/etcdmain/main.go:40\\nmain.main\\n\\t"
             "go.etcd.io/etcd/server/v3@v3.6.16/main.go:31\\nruntime.main\\n\\truntime/proc.go:290")
    line = (
        '{"level":"fatal","ts":"2026-12-02T05:28:21.914068Z","caller":"etcdmain/etcd.go:183",'
        f'"msg":"discovery failed","error":"{error}","stacktrace":"{trace}"}}\n'
    )
    return line[-2048:]


def test_a_wiped_member_whose_membership_changed_is_data_lost() -> None:
    """Was: a joined member whose data dir was wiped after a later replacement failed etcd's
    peer URL check instead of panicking, that was not read as data loss, and it was never
    replaced (seen in CI: DOWN for 240 s with 'nothing to do')."""
    for message in (validation_failure(3), validation_failure(7),
                    "error validating peerURLs {...}: member count is unequal"):
        looping = observe.member_pod(pod("b", phase="Running", containerStatuses=etcd_status(
            restarts=2,
            state={"waiting": {"reason": "CrashLoopBackOff"}},
            lastState={"terminated": {"exitCode": 1, "message": message}},
        )))
        assert looping.data_lost, message[:200]
    assert "error validating peerURLs" not in validation_failure(7)  # the 2 KiB tail cut it


def test_data_loss_needs_etcds_own_words() -> None:
    for message in (
        TOCOMMIT,
        "failed to start etcd: cannot fetch cluster info from peer urls: could not retrieve",
        "failed to recover v3 backend from snapshot",
    ):
        looping = observe.member_pod(pod("b", phase="Running", containerStatuses=etcd_status(
            restarts=1,
            state={"waiting": {"reason": "CrashLoopBackOff"}},
            lastState={"terminated": {"exitCode": 2, "message": message}},
        )))
        assert looping.data_lost, message
    now = observe.member_pod(pod("b", phase="Running", containerStatuses=etcd_status(
        state={"terminated": {"exitCode": 2, "reason": "Error", "message": TOCOMMIT}},
    )))
    assert now.data_lost
    assert now.last_error.startswith("Error, exit code 2, 0 restart(s): panic: tocommit(12)")
    # A run that died of it once and runs again proves nothing any more (was: the stale
    # lastState counted, so a later brief unreadiness could get a sound member removed).
    again = observe.member_pod(pod("b", phase="Running", containerStatuses=etcd_status(
        restarts=1, state={"running": {"startedAt": "2026-12-01T00:00:00Z"}},
        lastState={"terminated": {"exitCode": 2, "message": TOCOMMIT}},
    )))
    assert not again.data_lost


def test_a_pod_on_a_lost_node_is_seen_as_such() -> None:
    p = pod("a", phase="Running")
    p["spec"] = {"nodeName": "n1"}
    ready = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    unknown = {"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}
    assert not observe.member_pod(p, {"n1": ready}).node_lost
    assert observe.member_pod(p, {"n1": unknown}).node_lost
    assert observe.member_pod(p, {}).node_lost  # the Node object is gone
    assert not observe.member_pod(p, None).node_lost  # nothing known about nodes
    assert observe.member_pod(p, {}).node == "n1"


def test_ipv6_addresses_stand_in_brackets_in_urls() -> None:
    assert observe.url_host("fd00::12") == "[fd00::12]"
    assert observe.url_host("10.0.0.1") == "10.0.0.1"


def test_member_pods_meet_the_restricted_pod_security_level() -> None:
    p = manifests.member_pod(cluster(), "demo-a", "", "new", "cluster.local")
    sc = p["spec"]["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    csc = p["spec"]["containers"][0]["securityContext"]
    assert csc["allowPrivilegeEscalation"] is False
    assert csc["capabilities"] == {"drop": ["ALL"]}


def status(member_id: int, leader: int, errors: tuple[str, ...] = ()) -> Status:
    return Status(endpoint="e", cluster_id=7, member_id=member_id, leader_id=leader,
                  version="3.6.16", storage_version="3.6", raft_index=10, raft_term=2,
                  raft_applied_index=10, db_size=1, db_size_in_use=1, is_learner=False,
                  errors=errors)


def test_member_health_needs_status_health_a_leader_and_no_alarms() -> None:
    ok = Health(endpoint="e", healthy=True, took=0.01)
    assert observe.member_health(status(1, 1), ok).healthy
    assert observe.member_health(status(1, 1), ok).is_leader
    assert not observe.member_health(status(1, 0), ok).healthy
    assert not observe.member_health(status(1, 2, ("memberID:1 alarm:CORRUPT ",)), ok).healthy
    # NOSPACE fails etcd's health check, yet the member reads, deletes and votes: it counts
    # for quorum, and the alarm is flagged for the planner to clear
    alarm = Health("e", False, 0.1, "active alarm: NOSPACE on member 1")
    full = observe.member_health(status(1, 2, ("memberID:1 alarm:NOSPACE ",)), alarm)
    assert full.healthy and full.nospace
    assert not observe.member_health(status(1, 2), Health("e", False, 1.0, "timeout")).healthy
    assert not observe.member_health(None, None).reachable


def test_initial_cluster_lists_members_by_their_pod_names() -> None:
    members = [
        observe.member(EtcdMember(1, "demo-a", ("http://demo-a.demo-peer.ns.svc:2380",), (), False),
                       "demo", observe.member_health(None, None)),
        observe.member(EtcdMember(2, "", ("http://demo-b.demo-peer.ns.svc:2380",), (), True),
                       "demo", observe.member_health(None, None)),
    ]
    assert not members[1].started
    got = initial_cluster(members, 2, "demo-b", "http://demo-b.demo-peer.ns.svc:2380")
    assert got == ("demo-a=http://demo-a.demo-peer.ns.svc:2380,"
                   "demo-b=http://demo-b.demo-peer.ns.svc:2380")


def test_new_member_names_avoid_taken_ones() -> None:
    taken = {f"demo-{i}" for i in range(10)}
    for _ in range(50):
        name = observe.new_member_name("demo", taken)
        assert name.startswith("demo-") and len(name) == len("demo-") + 5
        assert name not in taken


def em(i: int, learner: bool = False) -> EtcdMember:
    return EtcdMember(i, f"m{i}", (f"http://demo-{i}.demo-peer.ns.svc:2380",), (), learner)


def test_the_membership_a_quorum_reports_wins_over_a_rogue_member() -> None:
    full = [em(1), em(2), em(3)]
    rogue = [em(1)]  # member 1 lost its data and founded a cluster of its own
    listed, dissent, _ = observe.agreed_membership({"a": rogue, "b": full, "c": full})
    assert listed == full
    assert dissent == {"a"}


def test_no_membership_is_trusted_without_a_quorum_behind_it() -> None:
    full = [em(1), em(2), em(3)]
    assert observe.agreed_membership({"b": full})[:2] == (None, frozenset())
    assert observe.agreed_membership({"a": [em(1)], "b": full})[:2] == (None, frozenset())
    assert observe.agreed_membership({}) == (None, frozenset(), "")
    single = [em(1)]
    assert observe.agreed_membership({"a": single}) == (single, frozenset(), "")
    with_learner = [em(1), em(2, learner=True)]
    assert observe.agreed_membership({"a": with_learner}) == (with_learner, frozenset(), "")


def test_a_lone_member_cannot_outvote_the_membership_last_seen() -> None:
    """Was: after a whole-cluster restart the seed came back first on an empty data directory,
    founded a cluster of one, and its word alone got the two members holding the data deleted."""
    listed, dissent, why = observe.agreed_membership({"seed": [em(1)]}, known_voters=3)
    assert (listed, dissent) == (None, frozenset())
    assert "2 must agree" in why
    # once a quorum of the last known voters answers, the rogue is outvoted
    full = [em(1), em(2), em(3)]
    listed, dissent, _ = observe.agreed_membership(
        {"seed": [em(1)], "b": full, "c": full}, known_voters=3
    )
    assert listed == full and dissent == {"seed"}
    # a cluster scaled down to one (status recorded the removal first) is still trusted
    assert observe.agreed_membership({"a": [em(1)]}, known_voters=1)[0] == [em(1)]


def test_every_member_restarts_in_place_the_seed_too() -> None:
    """Was: the seed had restartPolicy Never, so a size-1 emptyDir cluster died on its first
    crash. A seed on an emptied data dir is kept from founding a cluster by its annotation."""
    ec = cluster()
    seed = manifests.member_pod(ec, "demo-a", "demo-a=http://x:2380", "new", "cluster.local")
    joiner = manifests.member_pod(ec, "demo-b", "", "existing", "cluster.local")
    assert seed["spec"]["restartPolicy"] == "Always"
    assert joiner["spec"]["restartPolicy"] == "Always"


def test_the_pod_hash_follows_every_change_of_the_member_pod_but_not_the_member() -> None:
    base = cluster()
    one = manifests.member_pod(base, "demo-a", "demo-a=http://x:2380", "new", "cluster.local")
    two = manifests.member_pod(base, "demo-b", "", "existing", "cluster.local")
    ann = manifests.ANN_POD_HASH
    assert one["metadata"]["annotations"][ann] == two["metadata"]["annotations"][ann]
    assert one["metadata"]["labels"][manifests.LABEL_SERVING] == "false"
    changed = [
        cluster(version="3.6.15"),
        cluster(image="example.com/etcd"),
        cluster(resources={"limits": {"memory": "1Gi"}}),
        cluster(backendQuota="4Gi"),
        cluster(podTemplate={"annotations": {"a": "b"}}),
    ]
    hashes = {manifests.pod_hash(ec, "cluster.local") for ec in [base, *changed]}
    assert len(hashes) == 6
    selector = manifests.client_service(base)["spec"]["selector"]
    assert selector[manifests.LABEL_SERVING] == "true"


def test_a_pod_reads_back_with_its_hash_traffic_label_and_age() -> None:
    made = manifests.member_pod(cluster(), "demo-a", "", "existing", "cluster.local")
    made["metadata"]["creationTimestamp"] = "2026-12-02T00:00:10Z"
    seen = observe.member_pod(made)
    assert seen.pod_hash == manifests.pod_hash(cluster(), "cluster.local")
    assert seen.serving is False and seen.created == 1796169610.0
    made["metadata"]["labels"][manifests.LABEL_SERVING] = "true"
    assert observe.member_pod(made).serving is True
    assert observe.member_pod(pod("old")).created == 0.0  # unknown: the gate never fires
