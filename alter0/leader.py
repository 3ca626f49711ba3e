"""Named database-side leases: of several processes that could do one periodic job (the notifier), the holder
of the lease does it; another takes over once the holder stops renewing (it died, or lost the database)."""

from __future__ import annotations

from .clock import db_now
from .database import write_tx
from .models import Lease


def acquire(name: str, owner: str, ttl: float) -> bool:
    """Take or renew the lease ``name`` for ``owner`` for ``ttl`` seconds; False while another owner holds it."""
    at = db_now()
    with write_tx():
        taken = (Lease.update(owner=owner, expires_at=at + ttl)
                 .where((Lease.name == name) & ((Lease.owner == owner) | (Lease.expires_at < at))).execute())
        if not taken:
            taken = Lease.insert(name=name, owner=owner, expires_at=at + ttl).on_conflict_ignore() \
                .as_rowcount().execute()
    return bool(taken)


def release(name: str, owner: str) -> None:
    """Give the lease up at once (a clean stop), so another process need not wait for it to expire."""
    Lease.delete().where(Lease.name == name, Lease.owner == owner).execute()


def holder(name: str) -> dict | None:
    """The lease's owner and seconds left, if anyone holds it now."""
    row = Lease.get_or_none(Lease.name == name)
    if row is None or row.expires_at < db_now():
        return None
    return {"owner": row.owner, "expires_in_sec": round(row.expires_at - db_now(), 1)}
