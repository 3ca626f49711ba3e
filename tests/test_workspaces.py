"""Workspaces through real worker processes, the real `alter0` CLI and real git repositories made here: a worktree
per task as the agent's cwd, resume in it, receipts verified against git, diff, merge (a conflict refused and
shown), discard, prune, crash during creation, busy policies, and workspace.mode = none unchanged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support.helpers import BIN, merge, wait_until
from test_real_agents import agents_bin, real_env, stub  # noqa: F401  (real codex/claude on the model stub)

FAST = {"router": {"backend": "lexical"}, "task": {"routing_confidence_threshold": 1.0,
                                                   "close_confidence_threshold": 1.0}}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path) -> Path:
    """A real repository on branch main with one commit (shared.txt, three lines)."""
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "Test User")
    git(path, "config", "user.email", "test@example.invalid")
    (path / "shared.txt").write_text("alpha\nbeta\ngamma\n")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "initial")
    return path


@pytest.fixture
def ws_env(make_env, repo):
    """Factory: an install with workspace.mode = worktree on ``repo`` (more settings merged), worker started."""
    def factory(workspace: dict | None = None, start: bool = True, **config):
        env = make_env(**merge(FAST, {"workspace": {"mode": "worktree", "repo": str(repo), **(workspace or {})},
                                      **config}))
        if start:
            env.start_worker()
        return env
    return factory


def task_json(env, task_id) -> dict:
    return json.loads(env.cli("task", "show", str(task_id), "--json").stdout)


def test_each_task_works_in_its_own_worktree_and_resumes_there(ws_env, repo):
    env = ws_env()
    first = env.send("edit [[write:shared.txt=alpha\\nONE\\ngamma\\n]] [[commit:task one edits beta]]")
    assert first["status"] == "done", first
    tid = first["task_id"]
    worktree = env.output / "worktrees" / f"task-{tid}"
    assert env.agent_runs()[-1]["cwd"] == str(worktree)
    assert git(worktree, "symbolic-ref", "--short", "HEAD") == f"alter0/task-{tid}"
    assert (repo / "shared.txt").read_text() == "alpha\nbeta\ngamma\n"  # the main checkout is untouched
    second = env.send("more [[write:notes.md=hi]] [[commit:add notes]]", "--task", str(tid))
    assert second["task_id"] == tid and second["status"] == "done"
    assert env.agent_runs()[-1]["cwd"] == str(worktree)  # the resumed turn runs in the same worktree
    assert git(repo, "log", "--format=%s", f"alter0/task-{tid}") .splitlines()[:2] == ["add notes", "task one edits beta"]
    view = task_json(env, tid)
    assert view["workspace"]["state"] == "active" and view["workspace"]["branch"] == f"alter0/task-{tid}"
    receipt = env.job(second["job_id"])["receipt"]
    assert receipt["verified"] and [c["subject"] for c in receipt["commits"]] == ["add notes"]
    assert receipt["files"] == [{"path": "notes.md", "added": 1, "deleted": 0}]
    assert "receipt: verified" in env.cli("job", "show", str(second["job_id"])).stdout


def test_mode_none_is_unchanged(make_env):
    env = make_env(**FAST)
    env.start_worker()
    done = env.send("hello there")
    assert done["status"] == "done" and done["response"] == "echo: hello there"
    assert env.agent_runs()[-1]["cwd"] == str(env.output / "work" / f"task-{done['task_id']}")
    assert env.job(done["job_id"])["receipt"] is None
    assert not (env.output / "worktrees").exists()


def test_an_agent_claiming_a_commit_it_did_not_make_is_not_verified(ws_env):
    env = ws_env()
    fake = "3f9a2c1d7e"
    done = env.send(f"fix it [[write:fix.py=x = 1]] [[reply:Fixed and committed as {fake}.]]")
    receipt = env.job(done["job_id"])["receipt"]
    assert receipt["verified"] is False and receipt["commits"] == [] and receipt["uncommitted"] == ["fix.py"]
    assert receipt["claimed"] == [fake]
    assert any(fake in p for p in receipt["problems"])
    assert "not verified" in done["response"]


def test_commit_turn_policy_and_a_failed_check_never_auto_closes(ws_env):
    env = ws_env(workspace={"commit": "turn", "check_command": ["sh", "-c", "grep -q good result.txt"]},
                 task={"close_confidence_threshold": 0.5})
    done_words = "thanks, that did it, all done [[reply:You're welcome, happy to help; done.]]"
    bad = env.send(f"{done_words} [[write:result.txt=bad]]")
    receipt = env.job(bad["job_id"])["receipt"]
    assert len(receipt["commits"]) == 1 and receipt["commits"][0]["subject"].startswith("alter0: task")
    assert receipt["check"]["exit_code"] == 1 and receipt["verified"] is False
    assert "check failed (exit 1)" in bad["response"]
    assert task_json(env, bad["task_id"])["status"] == "open" and bad["closed"] is False
    assert env.job(bad["job_id"])["close"]["reason"].startswith("kept open by the receipt")
    good = env.send(f"{done_words} [[write:result.txt=good]]", "--task", str(bad["task_id"]))
    receipt = env.job(good["job_id"])["receipt"]
    assert receipt["check"]["exit_code"] == 0 and receipt["check"]["duration_sec"] >= 0 and receipt["verified"]
    assert good["closed"] is True  # the same words close the task once the check passes


def test_two_parallel_tasks_on_one_file_merge_then_conflict_refused_and_shown(ws_env, repo):
    env = ws_env()
    # each turn waits for the other to start (at most 20 s): they overlap only if both run at once
    a = env.send("A [[meet:ab=2]] [[write:shared.txt=alpha\\nFROM-A\\ngamma\\n]] [[commit:A edits]]", "--async")
    b = env.send("B [[meet:ab=2]] [[write:shared.txt=alpha\\nFROM-B\\ngamma\\n]] [[commit:B edits]]", "--async")
    ja, jb = env.wait_job(a["job_id"]), env.wait_job(b["job_id"])
    assert ja["status"] == jb["status"] == "done" and ja["task_id"] != jb["task_id"]
    runs = env.agent_runs()
    assert runs[0]["start"] < runs[1]["end"] and runs[1]["start"] < runs[0]["end"], "the two turns overlapped"
    stat = json.loads(env.cli("task", "diff", str(ja["task_id"]), "--stat", "--json").stdout)
    assert stat["files"] == [{"path": "shared.txt", "added": 1, "deleted": 1}] and "diff" not in stat
    assert "+FROM-A" in env.cli("task", "diff", str(ja["task_id"])).stdout
    merged = env.cli("task", "merge", str(ja["task_id"]))
    assert "merged alter0/task-" in merged.stdout
    assert (repo / "shared.txt").read_text() == "alpha\nFROM-A\ngamma\n"
    assert not (env.output / "worktrees" / f"task-{ja['task_id']}").exists()
    # the second: refused with the conflict shown, nothing changed
    head = git(repo, "rev-parse", "HEAD")
    diff = json.loads(env.cli("task", "diff", str(jb["task_id"]), "--json").stdout)
    assert "main moved on by 1 commit(s)" in " ".join(diff["out_of_band"]["notes"])
    refused = env.cli("task", "merge", str(jb["task_id"]), check=False)
    assert refused.returncode == 5 and "conflict: shared.txt" in refused.stderr and "CONFLICT" in refused.stderr
    assert git(repo, "rev-parse", "HEAD") == head and git(repo, "status", "--porcelain") == ""
    assert (env.output / "worktrees" / f"task-{jb['task_id']}").is_dir()
    audit = "".join(p.read_text() for p in (env.output / "audit").glob("*/command_permission.jsonl"))
    assert '"action": "task.merge"' in audit and '"ok": false' in audit
    env.cli("task", "discard", str(jb["task_id"]))
    assert git(repo, "branch", "--list", f"alter0/task-{jb['task_id']}") == ""


def test_out_of_band_commit_is_detected(ws_env):
    env = ws_env()
    done = env.send("one [[write:a.txt=1]] [[commit:agent commit]]")
    worktree = env.output / "worktrees" / f"task-{done['task_id']}"
    (worktree / "b.txt").write_text("by hand")
    git(worktree, "add", "-A")
    git(worktree, "commit", "-qm", "user commit by hand")
    diff = json.loads(env.cli("task", "diff", str(done["task_id"]), "--json").stdout)
    assert [c["subject"] for c in diff["out_of_band"]["commits"]] == ["user commit by hand"]
    git(worktree, "reset", "-q", "--hard", "HEAD~2")  # rewrite the branch: the receipt's commit is gone
    receipt = env.job(done["job_id"])["receipt"]
    assert receipt["verified"] is False and "no longer on" in " ".join(receipt["problems"])


def test_crash_during_worktree_creation_is_repaired_on_the_next_turn(ws_env, repo):
    env = ws_env(start=False)
    crashing = dict(env.env, ALTER0_FAULT_WORKTREE="after-add")
    worker = env.spawn([str(BIN / "alter0"), "worker"], "crashing-worker", crashing)
    sent = env.send("build [[write:x.txt=1]] [[commit:x]]", "--async")
    worker.wait(timeout=60)  # killed itself half-way through `git worktree add`
    assert "task-" in git(repo, "worktree", "list")
    env.start_worker()
    job = env.wait_job(sent["job_id"], timeout=90)
    assert job["status"] == "done" and job["receipt"]["verified"], job
    assert git(repo, "worktree", "list").count("worktrees/task-") == 1


def test_prune_keeps_uncommitted_work_unless_forced(ws_env):
    env = ws_env()
    clean = env.send("clean [[write:c.txt=1]] [[commit:c]]")
    dirty = env.send("dirty [[write:d.txt=1]] [[commit:d]]")
    (env.output / "worktrees" / f"task-{dirty['task_id']}" / "left.txt").write_text("uncommitted work")
    live = env.send("still open [[write:e.txt=1]] [[commit:e]]")
    for done in (clean, dirty):
        env.cli("task", "close", str(done["task_id"]))
    report = json.loads(env.cli("workspace", "prune", "--json").stdout)
    assert [r["task_id"] for r in report["removed"]] == [clean["task_id"]]
    assert report["kept"][0]["task_id"] == dirty["task_id"] and "left.txt" in report["kept"][0]["reason"]
    assert report["worktrees_in_use"] == 2 and report["disk_bytes_in_use"] > 0  # the open one and the kept one
    root = env.output / "worktrees"
    assert (root / f"task-{dirty['task_id']}" / "left.txt").exists() and (root / f"task-{live['task_id']}").is_dir()
    forced = json.loads(env.cli("workspace", "prune", "--force", "--json").stdout)
    assert [r["task_id"] for r in forced["removed"]] == [dirty["task_id"]]
    assert sorted(p.name for p in root.iterdir()) == [f"task-{live['task_id']}"]


def test_cleanup_on_close_removes_a_clean_worktree(ws_env):
    env = ws_env(workspace={"cleanup": "on_close"})
    done = env.send("x [[write:f.txt=1]] [[commit:f]]")
    env.cli("task", "close", str(done["task_id"]))
    assert not (env.output / "worktrees" / f"task-{done['task_id']}").exists()
    assert task_json(env, done["task_id"])["workspace"]["state"] == "removed"


@pytest.mark.parametrize("policy", ["enqueue", "reject", "interrupt", "collect"])
def test_busy_policies_with_real_processes(make_env, policy):
    env = make_env(**FAST)
    env.start_worker()
    first = env.send("start")
    tid = str(first["task_id"])
    running = env.send("long turn [[sleep:30]]", "--task", tid, "--async")
    env.reach(running["job_id"], ("generating",))
    wait_until(lambda: task_json(env, tid)["busy"]["busy"], 20, "the task to be busy")
    assert task_json(env, tid)["busy"]["job_id"] == running["job_id"]
    if policy == "reject":
        out = env.cli("send", "next", "--task", tid, "--busy-policy", "reject", "--json", check=False)
        assert out.returncode == 5 and f"job {running['job_id']} is generating" in out.stderr
        env.cli("send", f"/task use {tid}")  # the forced task counts as named: the task's own policy applies
        env.cli("send", f"/task busy reject {tid}")
        forced = env.cli("send", "via the forced task", "--json", check=False)
        assert forced.returncode == 5 and "is busy" in forced.stderr
        env.cli("job", "cancel", str(running["job_id"]))
        return
    if policy == "interrupt":
        nxt = env.send("instead", "--task", tid, "--busy-policy", "interrupt", "--async")
        assert env.wait_job(running["job_id"])["status"] == "cancelled"
        assert env.wait_job(nxt["job_id"])["response"] == "echo: instead"
        return
    waiting = env.send("second", "--task", tid, "--busy-policy", policy, "--async")
    third = env.send("third", "--task", tid, "--busy-policy", policy, "--async")
    env.cli("job", "cancel", str(running["job_id"]))
    if policy == "enqueue":
        assert waiting["job_id"] != third["job_id"]
        assert env.wait_job(third["job_id"])["response"] == "echo: third"
    else:  # collect: the third message joined the turn already waiting; one turn answers both
        assert third["job_id"] == waiting["job_id"]
        reply = env.wait_job(waiting["job_id"])["response"]
        assert "second" in reply and "third" in reply


@pytest.mark.parametrize("agent", ["codex", "claude"])
def test_real_agent_turn_and_resumed_turn_run_in_the_task_worktree(agent, real_env, stub, repo):
    env = real_env(agent, workspace={"mode": "worktree", "repo": str(repo)}, **FAST)
    first = env.send("first prompt: list the files")
    assert first["status"] == "done", first
    worktree = env.output / "worktrees" / f"task-{first['task_id']}"
    assert str(worktree) in stub.model_requests()[-1]["body_text"]  # the CLI was told it works there
    second = env.send("second prompt, resumed", "--task", str(first["task_id"]))
    assert second["status"] == "done" and "user_turns=2" in second["response"], second
    assert str(worktree) in stub.model_requests()[-1]["body_text"]
    task = task_json(env, first["task_id"])
    assert task["session_id"] and task["workspace"]["worktree"] == str(worktree)
    receipt = env.job(second["job_id"])["receipt"]
    assert receipt["commits"] == [] and receipt["verified"] is False  # a chat turn changes nothing: nothing proven


def test_task_repo_is_admin_only_and_gives_one_task_its_own_repository(make_env, repo, tmp_path):
    env = make_env(**merge(FAST, {"workspace": {"mode": "worktree"}}))  # no workspace.repo: only per task
    env.start_worker()
    created = env.cli("send", "/task new fix the parser", "--user", "admin").stdout
    tid = created.split("#")[1].split()[0]
    refused = env.cli("send", f"/task repo {repo} {tid}", "--user", "bob", check=False)  # not the CLI's own user
    assert refused.returncode == 6 and "admin command" in refused.stderr
    assert "not a git repository" in env.cli("send", f"/task repo {tmp_path} {tid}", "--user", "admin",
                                             check=False).stderr
    env.cli("send", f"/task repo {repo} {tid}", "--user", "admin")
    env.cli("send", f"/task busy reject {tid}", "--user", "admin")
    assert task_json(env, tid)["busy_policy"] == "reject"
    done = env.send("go [[write:p.txt=1]] [[commit:p]]", "--task", tid, "--user", "admin")
    assert done["status"] == "done" and env.job(done["job_id"])["receipt"]["verified"]
    assert git(repo, "branch", "--list", f"alter0/task-{tid}") != ""
    audit = "".join(p.read_text() for p in (env.output / "audit").glob("*/command_permission.jsonl"))
    assert '"allowed": false' in audit and "/task repo" in audit


def test_check_times_out_like_an_executor_and_a_cancel_kills_it(ws_env):
    env = ws_env(workspace={"check_command": ["sh", "-c", "echo checking; sleep 300"]},
                 task={"generation_timeout_sec": 3})
    timed = env.send("t [[write:a.txt=1]] [[commit:a]]")
    check = env.job(timed["job_id"])["receipt"]["check"]
    assert check["timed_out"] and check["exit_code"] is None and not env.job(timed["job_id"])["receipt"]["verified"]
    env.config["task"]["generation_timeout_sec"] = 120
    env.write_config()
    env.stop_all()
    env.start_worker()
    sent = env.send("c [[write:b.txt=1]] [[commit:b]]", "--task", str(timed["task_id"]), "--async")
    wait_until(lambda: any(r.get("event") == "reply" and "c [[write:b" in r["prompt"] for r in env.agent_runs()),
               30, "the agent turn to end (the check then runs)")
    env.cli("job", "cancel", str(sent["job_id"]))
    assert env.wait_job(sent["job_id"])["status"] == "cancelled"
    wait_until(lambda: not subprocess.run(["pgrep", "-f", "echo checking; sleep 300"], capture_output=True).stdout,
               10, "the check's process group to be killed")


def test_concurrent_worktree_creation_on_one_repository(tmp_path, repo):
    """Eight processes each make a task's worktree of the same repository at once: git's locks plus ours hold."""
    from support.helpers import open_cfg
    cfg = open_cfg(tmp_path / "inst", workspace={"mode": "worktree", "repo": str(repo)})
    from alter0 import taskstate
    ids = [taskstate.create("user:u", "u", "", f"task {n}", "command").id for n in range(8)]
    script = ("import sys; from alter0.config import load_config; from alter0.migrations import open_current; "
              "from alter0.models import Task; from alter0.workspaces import worktree; "
              "cfg = load_config(sys.argv[1], env={}); open_current(cfg); "
              "print(worktree.ensure(cfg, Task.get_by_id(int(sys.argv[2]))).path)")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(cfg.path), str(i)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in ids]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
    listed = git(repo, "worktree", "list", "--porcelain")
    assert all(f"branch refs/heads/alter0/task-{i}" in listed for i in ids)
    assert sorted(Path(o[0].strip()).name for o in outs) == sorted(f"task-{i}" for i in ids)


def test_worktree_mode_without_a_repository_fails_the_job_with_a_clear_message(make_env):
    env = make_env(**merge(FAST, {"workspace": {"mode": "worktree"}}))
    env.start_worker()
    failed = env.send("hello", check=False)
    job = env.job(failed["job_id"])
    assert job["status"] == "failed" and job["error"]["kind"] == "exit_error"
    assert "no repository is set: set workspace.repo" in job["error"]["message"]
    assert "Traceback" not in env.logs()


def test_a_large_diff_is_cut_and_the_raw_diff_stays_whole(tmp_path, repo):
    from support.helpers import open_cfg
    from alter0 import taskstate
    from alter0.models import Task
    from alter0.workspaces import review, worktree
    cfg = open_cfg(tmp_path / "inst", workspace={"mode": "worktree", "repo": str(repo)})
    task = taskstate.create("user:u", "u", "", "big change", "command")
    ws = worktree.ensure(cfg, task)
    (ws.path / "big.txt").write_text("".join(f"line {n}\n" for n in range(5000)))
    git(ws.path, "add", "-A")
    git(ws.path, "commit", "-qm", "big")
    task = Task.get_by_id(task.id)
    cut = review.diff(task, limit=2000)
    assert cut["truncated"] and len(cut["diff"]) == 2000 and cut["files"] == [{"path": "big.txt", "added": 5000,
                                                                               "deleted": 0}]
    assert "+line 4999" in review.raw_diff(task) and not review.diff(task)["truncated"]
