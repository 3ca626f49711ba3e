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


class IllegalTransition(Alter0Error):
    """A job state change that the state machine does not allow."""

    code, status = "illegal_transition", 409


class ExecutorError(Alter0Error):
    """An executor run failed; ``kind`` is one of ERROR_KINDS."""

    status, exit_code = 502, 7
    RETRYABLE = {"timeout": False, "rate_limited": True, "transient": True,
                 "not_found": False, "auth": False, "exit_error": False,
                 "bad_output": False, "cancelled": False}

    def __init__(self, kind: str, message: str, retryable: bool | None = None):
        super().__init__(message, code=kind)
        self.kind = kind
        self.retryable = self.RETRYABLE.get(kind, False) if retryable is None else retryable


class StageBusy(Alter0Error):
    """A stage cannot run yet (an earlier job holds its turn); it is parked, not failed."""

    code = "busy"
