"""The CLI's exit codes (errors carry theirs as ``Alter0Error.exit_code``)."""

RET_OK, RET_ERROR, RET_USAGE, RET_PENDING, RET_NOT_FOUND, RET_CONFLICT, RET_FORBIDDEN, RET_JOB_FAILED, RET_STORAGE = \
    range(9)
