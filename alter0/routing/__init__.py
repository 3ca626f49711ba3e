"""Routers and closers: which task a message belongs to, and whether an exchange finished it."""
