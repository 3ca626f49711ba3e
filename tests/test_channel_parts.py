"""The channel parts that need no platform: the Telegram text split, the outbox backoff, the registry, doctor."""

from __future__ import annotations

import json

import pytest

from alter0.channels import outbox, registry
from alter0.channels.base import Channel
from alter0.channels.telegram import TelegramChannel
from alter0.channels.telegram.channel import LIMIT
from alter0.channels.text import FENCE, split
from alter0.config import load_config
from alter0.errors import ConfigError


def _code_text(size: int) -> str:
    out, i = [], 0
    while sum(map(len, out)) < size:
        body = "\n".join(f"    v{i}_{k} = {k}" for k in range(60))
        out.append(f"Prose {i}.\n```python\ndef f{i}():\n{body}\n```\n")
        i += 1
    return "".join(out)


def _fences_balanced(part: str) -> bool:
    return sum(1 for line in part.split("\n") if line.strip().startswith(FENCE)) % 2 == 0


@pytest.mark.parametrize("size", [10_000, 30_000])
def test_split_keeps_code_blocks_whole_and_every_line(size):
    text = _code_text(size)
    parts = split(text, LIMIT)
    assert len(parts) >= size // LIMIT and all(len(p) <= LIMIT for p in parts)
    assert all(_fences_balanced(p) for p in parts)
    kept = [line for p in parts for line in p.split("\n")]
    assert [line for line in text.split("\n") if line and not line.startswith(FENCE)] == \
        [line for line in kept if line and not line.startswith(FENCE)]


def test_split_cuts_an_overlong_line_and_closes_an_unclosed_block():
    parts = split("x" * 9000, LIMIT)
    assert "".join(parts) == "x" * 9000 and all(len(p) <= LIMIT for p in parts)
    assert split("```\nnever closed", LIMIT) == ["```\nnever closed\n```"]
    assert split("short", LIMIT) == ["short"]


def test_backoff_prefers_retry_after_and_doubles_to_a_cap():
    assert outbox.backoff(1, 10, 7) == 7
    assert [outbox.backoff(n, 10, None) for n in (1, 2, 3, 4, 5, 6)] == [0.5, 1, 2, 4, 8, 10]


class ThirdParty(Channel):
    platform = "thirdparty"


def test_registry_loads_builtin_and_third_party_channels_the_same_way(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"channels": {"registry": ["alter0.channels.telegram:TelegramChannel",
                                                          f"{__name__}:ThirdParty"]}}))
    cfg = load_config(path, env={})
    assert registry.channels(cfg) == {"telegram": TelegramChannel, "thirdparty": ThirdParty}
    with pytest.raises(ConfigError, match="cannot load 'nope.module:X'"):
        registry.load("nope.module:X")
    with pytest.raises(ConfigError, match="is not a Channel subclass"):
        registry.load("alter0.config:Config")


def test_doctor_checks_enabled_channels(make_env):
    env = make_env(channels={"enabled": ["telegram"]})
    out = env.cli("doctor", "--skip", "executor", "--skip", "router", check=False)
    assert out.returncode != 0
    assert "channel telegram: channels.telegram.token is not set" in out.stdout
    assert "channel telegram: channels.telegram.allowed_users is empty" in out.stdout
    env.env["ALTER0_TELEGRAM_TOKEN"] = "1:secret-token-value"
    env.config["channels"]["telegram"] = {"allowed_users": [1]}
    env.write_config()
    out = env.cli("doctor", "--skip", "executor", "--skip", "router", check=False)
    assert out.returncode == 0 and "channels" in out.stdout, out.stdout
    shown = env.cli("config", "show", check=False).stdout + env.cli("send", "/config", check=False).stdout
    assert "secret-token-value" not in shown


def test_matrix_html_escapes_text_and_renders_code_blocks():
    from alter0.channels.matrix.html import FORMAT, content
    c = content("Use `x < y` here:\n```python\nif a < b and c > d:\n    pass\n```\n<b>not bold</b>")
    assert c["format"] == FORMAT and c["body"].startswith("Use `x < y`")
    assert c["formatted_body"] == ('Use <code>x &lt; y</code> here:<pre><code class="language-python">'
                                   'if a &lt; b and c &gt; d:\n    pass\n</code></pre>&lt;b&gt;not bold&lt;/b&gt;')
    assert content("```\nnever closed")["formatted_body"] == "<pre><code>never closed\n</code></pre>"


def test_loading_the_registry_does_not_import_the_matrix_client_library():
    """`alter0 status` and /api/status load every registered class: matrix-nio is imported by the channel process
    only (its import costs about a second)."""
    import subprocess
    import sys
    code = ("import sys; from alter0.channels.registry import channels; from alter0.config import load_config; "
            "import pathlib, tempfile; p = pathlib.Path(tempfile.mkdtemp()) / 'c.json'; p.write_text('{}'); "
            "print(sorted(channels(load_config(p, env={}))), 'nio' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["['forgejo',", "'github',", "'matrix',", "'telegram']", "False"], out.stderr
