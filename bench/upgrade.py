"""Upgrade 3.5 -> 3.6 by each strategy, measured (not a test): `python bench/upgrade.py [--json]`.

For Surge and then InPlace: a 3-member etcd 3.5 cluster on claims with 8 MiB of data, a writer
and a reader at ~100 ops/s each through a client that fails over between the member endpoints
with a 2 s deadline per operation, and a quorum monitor sampling every voter every 50 ms; then
spec.version -> 3.6. It brings up the local cluster (control plane, node, operator) through the
e2e fixtures, so it waits for the machine's node lock like the e2e scenarios.

Per strategy: duration_s, failed_ops, p99_ms, max_ms, quorum_loss_s, lost_writes,
member_replace_s (mean, from the operator's MemberReplaced/MemberRestarted Events: a new pod's
creation to its old member's removal, or a re-created pod's creation to serving again),
member_step_s (duration / members: each member's share of the whole rollout) and
etcd_start_catchup_s (mean, what etcd itself needs: its first log line to "ready to serve").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="one JSON line per strategy only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "figures.jsonl"
        env = {**os.environ, "ETCDOP_BENCH_OUT": str(out)}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO / "src"), str(REPO), env.get("PYTHONPATH", "")) if p
        )
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "timeout=3600",
            str(REPO / "e2e" / "bench_upgrade_scenario.py"),
        ]
        run = subprocess.run(cmd, cwd=REPO, env=env, capture_output=args.json, text=True)
        lines = out.read_text().splitlines() if out.exists() else []
    for line in lines:
        if args.json:
            print(line)
        else:
            print(", ".join(f"{k}={v}" for k, v in json.loads(line).items()))
    if run.returncode != 0 and args.json:
        sys.stderr.write((run.stdout or "")[-4000:])
    return 0 if len(lines) == 2 else 1


if __name__ == "__main__":
    sys.exit(main())
