"""Several worker hosts on one Redis and one PostgreSQL: ordering, spread, a SIGKILL mid-run, cancel.

Each worker runs in a network namespace of its own (made here with ``ip netns`` and a veth pair, as a
separate host would be), reaching Redis and PostgreSQL on the host side of its veth. Where namespaces are
not permitted, the same run uses plain processes on loopback and the namespace test says so in its skip.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest

from scale_support import Services, assert_task_order, log_worker_pids, require_services, runs_by_worker, submitter
from support.helpers import BIN, FAKE_AGENT, pid_alive


TASKS, PER_TASK, HOSTS = 20, 10, 3
MESSAGE = re.compile(r"t(\d+) m(\d+)")


class NetHosts:
    """Test hosts: one network namespace per worker, joined to this machine by a veth pair."""

    def __init__(self, count: int):
        tag = f"a0{os.getpid() % 100000}"
        third = 20 + os.getpid() % 200
        self.names = [f"{tag}n{i}" for i in range(count)]
        self.links = [f"{tag}v{i}" for i in range(count)]
        self.nets = [f"10.231.{(third + i) % 250}" for i in range(count)]

    @property
    def host_ips(self) -> list[str]:
        return [f"{net}.1" for net in self.nets]

    def up(self) -> None:
        self.remove_stale()
        self.down()  # a namespace of the same name left by a killed run
        for name, link, net in zip(self.names, self.links, self.nets):
            peer = link + "p"
            for cmd in (["ip", "netns", "add", name],
                        ["ip", "link", "add", link, "type", "veth", "peer", "name", peer],
                        ["ip", "link", "set", peer, "netns", name],
                        ["ip", "addr", "add", f"{net}.1/24", "dev", link],
                        ["ip", "link", "set", link, "up"],
                        ["ip", "netns", "exec", name, "ip", "addr", "add", f"{net}.2/24", "dev", peer],
                        ["ip", "netns", "exec", name, "ip", "link", "set", peer, "up"],
                        ["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"]):
                subprocess.run(cmd, check=True, capture_output=True, text=True)

    @staticmethod
    def remove_stale() -> None:
        """Namespaces left by an earlier run that was killed (its pid is in the name)."""
        listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        for match in re.finditer(r"^(a0(\d+)n(\d+))", listing, re.M):
            name, pid, i = match.groups()
            if not pid_alive(int(pid)):
                subprocess.run(["ip", "netns", "del", name], capture_output=True)
                subprocess.run(["ip", "link", "del", f"a0{pid}v{i}"], capture_output=True)

    def down(self) -> None:
        for name, link in zip(self.names, self.links):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
            subprocess.run(["ip", "link", "del", link], capture_output=True)


def netns_unavailable() -> str | None:
    """Why this machine cannot make network namespaces for the test, or None."""
    if os.geteuid() != 0:
        return "not root"
    probe = f"a0probe{os.getpid() % 100000}"
    result = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if result.returncode != 0:
        return f"`ip netns add` failed: {result.stderr.strip() or result.returncode}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


@pytest.fixture(scope="module")
def net_hosts():
    """Namespaced hosts plus a Redis and a PostgreSQL listening on loopback and on each host's veth peer."""
    require_services()
    why = netns_unavailable()
    if why:
        pytest.skip(f"network namespaces not permitted here ({why}): test_200_messages_over_worker_processes "
                    "ran the same check with plain worker processes on loopback instead")
    hosts = NetHosts(HOSTS)
    try:
        hosts.up()
        services = Services(hosts=("127.0.0.1", *hosts.host_ips)).start()
    except Exception:
        hosts.down()
        raise
    yield hosts, services
    services.stop()
    hosts.down()


def start_worker_in(env, namespace: str, host_ip: str, backend: dict) -> subprocess.Popen:
    """`alter0 worker` inside a namespace, reaching the services at the host side of its veth."""
    db_url = backend["runtime"]["db"]["url"].replace("127.0.0.1", host_ip)
    broker_url = backend["runtime"]["queue"]["broker_url"].replace("127.0.0.1", host_ip)
    wenv = dict(env.env, DATABASE_URL=db_url, ALTER0_RUNTIME__QUEUE__BROKER_URL=broker_url)
    proc = env.spawn(["ip", "netns", "exec", namespace, str(BIN / "alter0"), "worker"], f"worker-{namespace}", wenv)
    return env.await_worker(proc, timeout=30)


def run_200_messages(env, workers: list[subprocess.Popen], on_running=None) -> None:
    """200 messages over 20 tasks; SIGKILL the first worker a third of the way; check order, spread, no loss."""
    from alter0 import service, taskstate
    from alter0.models import Job, Task
    rt = submitter(env)
    task_ids = [Task.create(title=f"t{t:02d}", scope=taskstate.scope_of(rt.cfg, f"u{t:02d}", ""), user_id=f"u{t:02d}",
                            executor="command").id for t in range(TASKS)]
    jobs = [service.submit(rt, f"t{t:02d} m{k:02d} [[sleep:0.15]]", f"u{t:02d}", task_id=task_ids[t])[0].id
            for k in range(PER_TASK) for t in range(TASKS)]
    deadline = time.time() + 60
    while len(env.agent_runs()) < len(jobs) // 3 and time.time() < deadline:
        time.sleep(0.05)
    if on_running:
        on_running()
    victim = workers[0]
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    done_at_kill = len(env.agent_runs())
    assert done_at_kill < len(jobs), "the run ended before the kill: nothing was mid-run"

    killed_at = time.time()
    deadline = time.time() + 240
    while time.time() < deadline:
        states = {j.status for j in Job.select(Job.status).where(Job.id.in_(jobs)).distinct()}
        if states <= {"done", "failed", "cancelled", "timed_out"}:
            break
        time.sleep(0.25)
    counts: dict[str, int] = {}
    for j in Job.select(Job.status).where(Job.id.in_(jobs)):
        counts[j.status] = counts.get(j.status, 0) + 1
    assert counts == {"done": len(jobs)}, (counts, env.logs())
    print(f"200 messages: {done_at_kill} generated before the kill, all done {time.time() - killed_at:.1f}s after it")

    # nothing lost, nothing doubled: each task has exactly its ten replies, in order
    for t, task_id in enumerate(task_ids):
        view = json.loads(env.cli("task", "show", str(task_id), "--json").stdout)
        replies = [MESSAGE.search(m["content"]).groups() for m in view["messages"] if m["role"] == "assistant"]
        assert replies == [(f"{t:02d}", f"{k:02d}") for k in range(PER_TASK)], (t, replies)
    # per-task order held across hosts: one generation of a task at a time, in message order
    assert_task_order(env.agent_runs(), lambda m: tuple(int(x) for x in MESSAGE.search(m).groups()))
    # the work was spread: every worker generated, the killed one before it died
    spread = runs_by_worker(env)
    assert set(spread) == {w.pid for w in workers}, spread
    assert all(n >= 5 for n in spread.values()), spread


def test_200_messages_over_hosts_in_network_namespaces(make_env, net_hosts):
    hosts, services = net_hosts
    backend = services.backend_config()
    env = make_env(**backend)
    log_worker_pids(env, FAKE_AGENT)
    workers = [start_worker_in(env, ns, ip, backend) for ns, ip in zip(hosts.names, hosts.host_ips)]
    seen: set[str] = set()

    def check_network_path():
        # the workers' database sessions come from their namespaces' addresses, not loopback
        conn = services.pg_connect()
        try:
            cur = conn.cursor()
            cur.execute("SELECT DISTINCT host(client_addr) FROM pg_stat_activity WHERE datname = %s",
                        (backend["runtime"]["db"]["url"].rsplit("/", 1)[1],))
            seen.update(row[0] for row in cur.fetchall() if row[0])
        finally:
            conn.close()
        # and so do their Redis connections
        redis_seen.update(c["addr"].rsplit(":", 1)[0] for c in services.redis_client().client_list())

    redis_seen: set[str] = set()
    run_200_messages(env, workers, on_running=check_network_path)
    assert {f"{net}.2" for net in hosts.nets} <= seen, seen
    assert {f"{net}.2" for net in hosts.nets} <= redis_seen, redis_seen


def test_200_messages_over_worker_processes(make_env, scale_services):
    if netns_unavailable() is None:
        pytest.skip("network namespaces are permitted here: test_200_messages_over_hosts_in_network_namespaces "
                    "ran this check with each worker on a host of its own")
    env = make_env(**scale_services.backend_config())
    log_worker_pids(env, FAKE_AGENT)
    workers = [env.start_worker() for _ in range(HOSTS)]
    run_200_messages(env, workers)


def test_cancel_reaches_a_worker_on_another_host(make_env, net_hosts):
    hosts, services = net_hosts
    backend = services.backend_config()
    env = make_env(**backend)
    for ns, ip in list(zip(hosts.names, hosts.host_ips))[:2]:
        start_worker_in(env, ns, ip, backend)
    # Given a long generation running on one of the namespaced hosts
    job_id = json.loads(env.cli("send", "a long one [[sleep:60]]", "--async", "--json").stdout)["job_id"]
    deadline = time.time() + 30
    agents: list[int] = []
    while not agents and time.time() < deadline:
        time.sleep(0.1)
        agents = _agents_of(env)
    assert agents and env.job(job_id)["status"] == "generating"
    # When this host (the CLI, on loopback) cancels it
    started = time.time()
    env.cli("job", "cancel", str(job_id))
    job = env.wait_job(job_id, 20)
    # Then the worker on the other host stops it within seconds and the agent process is gone
    assert job["status"] == "cancelled" and time.time() - started < 10, job
    time.sleep(0.5)
    assert not any(pid_alive(p) for p in agents)


def _agents_of(env) -> list[int]:
    """Pids of this install's running fake agents."""
    found = []
    for pid in subprocess.run(["pgrep", "-f", "fake_agent.py"], capture_output=True, text=True).stdout.split():
        try:
            if str(env.tmp).encode() in open(f"/proc/{pid}/environ", "rb").read():
                found.append(int(pid))
        except OSError:
            pass
    return found
