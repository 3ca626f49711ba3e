"""The channel registry: ``channels.registry`` lists channel classes by dotted path (``module:Class``).

Built-in channels are listed there exactly as a third-party one is added. A settings list rather than a
package entry point group: it works from a checkout without reinstalling (worktrees, PYTHONPATH), it is shown
by ``alter0 config`` and documented in docs/configuration.md, and a user can remove a built-in channel."""

from __future__ import annotations

import importlib

from ..config import Config
from ..errors import ConfigError
from .base import Channel


def load(path: str) -> type[Channel]:
    """The Channel class at ``module:Class``; ConfigError naming the path if it is not one."""
    module_name, _, attr = path.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"channels.registry: cannot load {path!r}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Channel) and cls.platform):
        raise ConfigError(f"channels.registry: {path!r} is not a Channel subclass with a platform name")
    return cls


def channels(cfg: Config) -> dict[str, type[Channel]]:
    """Platform name -> Channel class, for every registered channel."""
    return {cls.platform: cls for cls in map(load, cfg["channels.registry"])}


def channel_class(cfg: Config, platform: str) -> type[Channel]:
    """The registered channel called ``platform``."""
    found = channels(cfg)
    if platform not in found:
        raise ConfigError(f"no channel {platform!r} registered; channels.registry has {', '.join(found) or 'none'}")
    return found[platform]
