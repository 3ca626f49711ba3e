"""Chat channels: the contract (base), the registry, the durable inbox and delivery outbox, the process loop."""
