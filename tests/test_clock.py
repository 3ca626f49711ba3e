"""Leases and heartbeats on PostgreSQL use the database server's clock: a worker whose host clock is 30 s
behind is not taken for dead, steals no work, and no executor run is thrown away."""

from __future__ import annotations

import json

from support.helpers import BIN, FINISHED, merge, wait_until


def test_worker_with_a_skewed_clock_steals_no_work_on_postgresql(make_env, scale_services):
    from scale_support import fresh_backend_config
    env = make_env(**merge(fresh_backend_config(), {}))
    env.start_worker()
    skewed = env.await_worker(env.spawn([str(BIN / "alter0"), "worker"], "skewed",
                                        env=dict(env.env, ALTER0_FAULT_CLOCK_SKEW="-30")))
    ids = [env.send(f"job {i} [[sleep:1]]", "--user", f"u{i}", "--async")["job_id"] for i in range(12)]
    wait_until(lambda: all(env.job(j)["status"] in FINISHED for j in ids), 90, "every job to finish")
    assert [env.job(j)["status"] for j in ids] == ["done"] * len(ids)
    runs = [r for r in env.agent_runs() if r.get("event") == "reply"]
    assert len(runs) == len(ids), "an executor run was thrown away and repeated"
    logs = env.logs()
    assert "is gone" not in logs and "reclaiming job" not in logs, logs[-2000:]
    workers = json.loads(env.cli("status", "--json").stdout)["workers"]
    assert skewed.poll() is None and len(workers) == 2, workers
