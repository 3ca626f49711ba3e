"""alter0: a local-first task orchestration kernel in front of coding-agent CLIs."""

__version__ = "0.1.0"
