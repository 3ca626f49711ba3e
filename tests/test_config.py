"""Configuration: defaults, file, environment, and a clear refusal of every bad value."""

import json
import os

import pytest

from alter0.config import load_config, stage_retry_policy
from alter0.errors import ConfigError


def write(tmp_path, data) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return str(path)


def test_defaults_then_file_then_environment(tmp_path):
    path = write(tmp_path, {"task": {"routing_confidence_threshold": 0.4}, "runtime": {"queue": {"workers": 3}}})
    cfg = load_config(path, env={"ALTER0_RUNTIME__QUEUE__WORKERS": "6", "ALTER0_OUTPUT_DIR": str(tmp_path / "o")})
    assert cfg["task.routing_confidence_threshold"] == 0.4
    assert cfg["runtime.queue.workers"] == 6
    assert cfg.output_dir == (tmp_path / "o").resolve()
    assert cfg["executor.name"] == "auto"


@pytest.mark.parametrize("data, message", [
    ({"executor": {"name": "bash"}}, "executor.name = 'bash': allowed values are auto, codex"),
    ({"task": {"routing_confidence_threshold": 1.5}}, "routing_confidence_threshold = 1.5: must be <= 1"),
    ({"runtime": {"queue": {"workers": "four"}}}, "runtime.queue.workers = 'four': expected int"),
    ({"runtime": {"queue": {"workers": True}}}, "runtime.queue.workers = True: expected int"),
    ({"executor": {"name": "command"}}, "executor.command is not set"),
    ({"executor": {"command": "codex exec"}}, "expected a non-empty list of strings"),
    ({"retry": {"generate": {"retry_on": ["sometimes"]}}}, "a list drawn from not_found"),
    ({"nope": 1}, "unknown key(s) nope"),
    ("{not json", "is not valid JSON"),
])
def test_bad_values_name_key_value_and_what_is_allowed(tmp_path, data, message):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, data), env={})
    assert message in err.value.message


def test_bad_environment_value_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="runtime.queue.workers"):
        load_config(write(tmp_path, {}), env={"ALTER0_RUNTIME__QUEUE__WORKERS": "0"})


def test_missing_explicit_config_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "missing.json"), env={})


def test_retry_policy_resolves_stage_then_queue_defaults(tmp_path):
    cfg = load_config(write(tmp_path, {"runtime": {"queue": {"max_retries": 4, "retry_delay_sec": 0.5}},
                                       "retry": {"close": {"attempts": 1, "delay_sec": 2}}}), env={})
    assert stage_retry_policy(cfg, "generate")["attempts"] == 5
    assert stage_retry_policy(cfg, "generate")["delay"] == 0.5
    assert stage_retry_policy(cfg, "close") == {"attempts": 1, "delay": 2.0, "max_delay": 30.0,
                                                "retry_on": {"transient", "rate_limited"}}


def test_cli_reports_config_errors_in_one_line(tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    path = write(tmp_path, {"executor": {"name": "bash"}})
    out = subprocess.run([str(Path(sys.executable).parent / "alter0"), "--config", path, "status"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.startswith("alter0: config executor.name")
    assert len(out.stderr.strip().splitlines()) == 1


def test_the_session_never_reads_the_current_directorys_config():
    """conftest runs the tests where ./config/config.json is refused and ALTER0_CONFIG is unset: a runtime that
    forgets its config path fails loudly instead of reading the developer's install."""
    assert "ALTER0_CONFIG" not in os.environ
    with pytest.raises(ConfigError, match="read_by_a_test"):
        load_config()
