"""The Telegram channel (Bot API, long polling): ``TelegramChannel`` is what ``channels.registry`` names."""

from .channel import TelegramChannel

__all__ = ["TelegramChannel"]
