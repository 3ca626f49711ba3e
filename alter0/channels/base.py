"""The Channel contract: a platform's events become ``service.submit`` calls, job outcomes go back as deliveries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import Alter0Error
from ..models import ChannelDelivery, ChannelEvent, Job, NotifyEvent
from ..runtime import Runtime


class DeliveryError(Alter0Error):
    """A platform refused or failed a request."""

    code, status = "channel_delivery", 502


class Transient(DeliveryError):
    """Try again later (429, 5xx, timeout, connection refused); ``retry_after`` seconds when the platform says."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class Permanent(DeliveryError):
    """Will never succeed as sent (400, 403: the chat is gone, the text is invalid)."""


@dataclass
class Incoming:
    """One platform event, normalised: what the inbox records before anything acts on it."""

    event_id: str
    kind: str  # message | command | callback | edit | unsupported | other
    user_id: str = ""
    channel_id: str = ""
    thread_key: str | None = None
    content: str = ""
    platform_message_id: str | None = None
    at: float | None = None  # when the platform says it was sent (the stale filter reads it)
    payload: dict = field(default_factory=dict)  # what answering needs (chat id, topic id, callback id)


@dataclass
class Outgoing:
    """One delivery to queue: ``key`` makes it unique (the same key twice is one delivery)."""

    key: str
    method: str
    payload: dict


class Sender:
    """What the outbox's Deliverer sends through: a platform (its rows), ``send`` and an ordering lane. Chat
    channels and webhook targets are both senders."""

    platform: str = ""

    def __init__(self, cfg):
        self.cfg = cfg

    def lane(self, delivery: ChannelDelivery) -> object:
        """Rows of one lane go out strictly in order (a failed one holds back the later ones of its lane); None =
        not ordered. A chat's lane is its conversation (the event the rows answer)."""
        return delivery.event_id

    def send(self, delivery: ChannelDelivery) -> str | None:
        """Send one delivery; the platform's message id, or raise Transient / Permanent."""
        raise NotImplementedError

    def delivered(self, delivery: ChannelDelivery, result_id: str | None) -> None:
        """After a delivery went out."""


class Channel(Sender):
    """A chat platform. Subclasses set ``platform`` and implement the hooks; ``alter0.channels.runner`` drives them
    (poll → inbox → handle → submit; watch jobs → outbox → deliver; the notification feed → outbox → deliver)."""

    platform: str = ""
    #: Most events one poll returns; a full batch on a cold start means older ones are still coming.
    batch_limit: int = 100

    def __init__(self, rt: Runtime):
        super().__init__(rt.cfg)
        self.rt = rt

    @classmethod
    def problems(cls, cfg) -> list[str]:
        """Configuration problems that keep the channel from starting (doctor and start-up print them)."""
        return []

    @classmethod
    def checks(cls, cfg) -> list[str]:
        """Live checks ``alter0 doctor`` runs besides ``problems`` (the platform reachable); never at start-up,
        where an outage only delays the channel."""
        return []

    def poll(self, cursor: str | None, cold: bool) -> tuple[list[Incoming], str | None]:
        """Fetch new events after ``cursor``; returns them and the cursor to save once they are recorded."""
        raise NotImplementedError

    def stale(self, events: list[Incoming], cold: bool) -> set[str]:
        """Event ids not to act on (recorded only): a cold start's flood of old updates (every poll until a batch
        is not full). Never on a restart."""
        return set()

    def allowed(self, event: ChannelEvent) -> bool:
        """May this event's sender use the bot? Others get one refusal line and an audit record."""
        raise NotImplementedError

    def submission(self, event: ChannelEvent) -> dict | None:
        """What a message event submits (``service.submit`` keywords: content, user_id, channel_id, thread_key), or
        None to record it as ignored (e.g. a comment on an issue no task works on)."""
        return {"content": event.content, "user_id": event.user_id, "channel_id": event.channel_id,
                "thread_key": event.thread_key}

    def sweep(self) -> list[tuple[ChannelEvent | None, list[Outgoing]]]:
        """Deliveries not caused by an event of this channel (a task closed elsewhere closes its issue); the runner
        calls it every few seconds and queues what it returns (keys make repeats no-ops)."""
        return []

    def answer(self, event: ChannelEvent) -> list[Outgoing]:
        """Handle a non-message event (command, button, edit, refused or unsupported input): what to send."""
        raise NotImplementedError

    def refuse(self, event: ChannelEvent) -> list[Outgoing]:
        """The one refusal line for a sender not on the allowlist."""
        raise NotImplementedError

    def rejected(self, event: ChannelEvent, message: str) -> list[Outgoing]:
        """The answer to a message alter0 refused (too large, invalid): the reason, nothing submitted."""
        raise NotImplementedError

    def working_key(self, event: ChannelEvent) -> str:
        """The outbox key of an event's "working…" message (later edits target the message it made)."""
        return f"working:{self.platform}:{event.id}"

    def working(self, event: ChannelEvent, job: Job) -> list[Outgoing]:
        """The first answer to a submitted message (the "working…" message)."""
        raise NotImplementedError

    def progress(self, event: ChannelEvent, job: Job, working: ChannelDelivery | None) -> list[Outgoing]:
        """An edit showing the job's stage (sent only once the "working…" message exists)."""
        return []

    def outcome(self, event: ChannelEvent, job: Job, working: ChannelDelivery | None) -> list[Outgoing]:
        """The job's reply or error, replacing the "working…" message where it can."""
        raise NotImplementedError

    @classmethod
    def notifies(cls, cfg) -> bool:
        """Whether this channel posts notifications with ``cfg`` (a notify chat or room is set): then the
        processes keep the notification feed (``alter0.notify``) running."""
        return False

    def notification(self, event: NotifyEvent) -> list[Outgoing]:
        """What to post for one feed event (job.done, job.failed, job.timed_out, task.closed, worker.down,
        worker.up; ``event.payload`` has the summary); [] = nothing. Keys must be unique per event and target,
        e.g. ``notify:<platform>:<event.id>``. The runner queues them once, whatever crashes."""
        return []

    def delivered(self, delivery: ChannelDelivery, result_id: str | None) -> None:
        """After a delivery went out (bind the sent message to the job's task, so a reply to it goes there)."""

    def close(self) -> None:
        """Release connections."""


def describe(payload: Any) -> str:
    """A short text for logs and errors."""
    return str(payload)[:300]
