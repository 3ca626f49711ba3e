"""The Matrix channel (client-server API via matrix-nio, /sync long polling): ``MatrixChannel`` is what
``channels.registry`` names."""

from .channel import MatrixChannel

__all__ = ["MatrixChannel"]
