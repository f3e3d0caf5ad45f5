"""What the local node carries over a node restart, and the termination message rules."""

from __future__ import annotations

from typing import Any

from e2e.localcluster.node.pods import (
    ContainerRecord,
    PodRecord,
    log_tail,
    pod_phase,
    pod_status,
    termination_message,
)


def main(name: str = "c") -> ContainerRecord:
    return ContainerRecord(name=name, image="img", kind="main")


def test_a_run_the_status_shows_running_died_with_the_node() -> None:
    c = main()
    had_run = c.resume({
        "name": "c", "restartCount": 2, "containerID": "local://x-c-2",
        "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
    })
    assert had_run
    assert (c.state, c.exit_code, c.reason, c.restart_count) == ("terminated", 137, "Error", 2)
    st = c.status()
    assert st["state"]["terminated"]["startedAt"] == "2026-01-01T00:00:00Z"
    assert st["lastState"]["terminated"]["exitCode"] == 1
    c.next_attempt()  # restartPolicy Always: started again, the lost run becomes lastState
    assert c.restart_count == 3
    assert c.status()["lastState"]["terminated"]["exitCode"] == 137


def test_a_terminated_run_keeps_its_exit_code_and_message() -> None:
    c = main()
    assert c.resume({"name": "c", "restartCount": 0, "state": {"terminated": {
        "exitCode": 3, "reason": "Error", "message": "boom", "startedAt": "a", "finishedAt": "b"}}})
    t = c.status()["state"]["terminated"]
    assert (t["exitCode"], t["reason"], t["message"], t["finishedAt"]) == (3, "Error", "boom", "b")


def test_a_crash_looping_container_keeps_its_count_and_last_state() -> None:
    c = main()
    assert c.resume({"name": "c", "restartCount": 4,
                     "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                     "lastState": {"terminated": {"exitCode": 2, "message": "m"}}})
    assert c.restart_count == 4 and c.last_terminated == {"exitCode": 2, "message": "m"}


def test_a_container_that_never_ran_has_no_history() -> None:
    c = main()
    assert not c.resume({"name": "c", "restartCount": 0,
                         "state": {"waiting": {"reason": "ContainerCreating"}}})
    assert not c.resume(None)


def test_a_never_pod_whose_container_died_with_the_node_failed() -> None:
    c = main()
    c.resume({"name": "c", "restartCount": 0, "state": {"running": {"startedAt": "t"}}})
    c.wants_restart = False
    rec = PodRecord(uid="u", restart_policy="Never", main=[c])
    assert pod_phase(rec) == "Failed"
    assert pod_status(rec, {})["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 137


def test_log_tail_keeps_80_lines_then_2048_bytes() -> None:
    lines = b"".join(b"line %d\n" % i for i in range(200))
    tail = log_tail(lines)
    assert tail.splitlines()[0] == "line 120" and tail.endswith("line 199\n")
    wide = b"".join(b"%04d" % i + b"x" * 95 + b"\n" for i in range(100))
    tail = log_tail(wide)
    assert len(tail.encode()) == 2048 and tail.endswith("x\n")


def test_termination_message_prefers_the_file_then_logs_on_error() -> None:
    log = b"starting\npanic: tocommit(12) is out of range [lastIndex(0)]\n"
    assert termination_message(b"written", "FallbackToLogsOnError", 1, log) == "written"
    assert "tocommit(12)" in termination_message(b"", "FallbackToLogsOnError", 2, log)
    assert termination_message(b"", "FallbackToLogsOnError", 0, log) == ""
    assert termination_message(b"", "File", 2, log) == ""
    big: Any = b"y" * 10000
    assert len(termination_message(big, "File", 1, b"")) == 4096
