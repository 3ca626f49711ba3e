"""The error tree of alter0: every error a user can see carries a code and an HTTP status."""


class Alter0Error(Exception):
    """Base of every error alter0 reports to a user (never shown as a traceback)."""

    code = "error"
    status = 500
    exit_code = 1

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class ConfigError(Alter0Error):
    """A configuration value is missing or not allowed."""

    code, status, exit_code = "bad_config", 500, 2


class InputError(Alter0Error):
    """The caller sent something malformed or not allowed."""

    code, status, exit_code = "bad_input", 400, 2


class NotFound(Alter0Error):
    """An id names nothing."""

    code, status, exit_code = "not_found", 404, 4


class Conflict(Alter0Error):
    """The request does not fit the current state (e.g. cancel a finished job)."""

    code, status, exit_code = "conflict", 409, 5


class Forbidden(Alter0Error):
    """The caller may not do this."""

    code, status, exit_code = "forbidden", 403, 6


class StorageUnavailable(Alter0Error):
    """The database, the queue store or the output directory cannot be read or written (corrupt, read-only,
    disk full, locked); the message names the path and the fix."""

    code, status, exit_code = "storage_unavailable", 503, 8


class IllegalTransition(Alter0Error):
    """A job state change that the state machine does not allow."""

    code, status = "illegal_transition", 409


#: The one error-kind table of stage failures: kind -> (retried by the default policy, may never be retried
#: whatever a policy's retry_on says). config.ERROR_KINDS and retry.py read it.
ERROR_KINDS: dict[str, tuple[bool, bool]] = {
    "not_found": (False, True), "auth": (False, True), "timeout": (False, False),
    "rate_limited": (True, False), "transient": (True, False), "exit_error": (False, False),
    "bad_output": (False, False), "cancelled": (False, True), "internal": (False, False),
}


class ExecutorError(Alter0Error):
    """An executor run (or a stage) failed; ``kind`` is one of ERROR_KINDS."""

    status, exit_code = 502, 7

    def __init__(self, kind: str, message: str):
        super().__init__(message, code=kind)
        self.kind = kind

    @property
    def retryable(self) -> bool:
        """Whether a retry may help (the stage's policy decides whether it happens)."""
        return ERROR_KINDS.get(self.kind, (False, False))[0]


def never_retried(kind: str) -> bool:
    """Kinds no retry policy may retry (a missing binary, a bad login, a cancel)."""
    return ERROR_KINDS.get(kind, (False, False))[1]
