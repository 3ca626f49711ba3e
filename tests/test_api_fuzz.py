"""Fuzz the API from its own OpenAPI document (schemathesis, bounded examples): no request may give a 5xx.

The one 5xx allowed is the documented 504 of POST /api/message when the job outlives web.sync_timeout_sec
(no worker runs here), which is not an error of the server.
"""

from __future__ import annotations

import pytest

from support.helpers import skip_or_fail

try:
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
except ImportError:  # pragma: no cover - CI installs it (pyproject test extra)
    schemathesis = None

#: Examples per operation and generation mode (15 operations x positive, negative).
MAX_EXAMPLES = 25


@pytest.fixture
def fuzz_app(make_web_app):
    app = make_web_app(web__sync_timeout_sec=0.1, web__stream_timeout_sec=0.1)
    app.queue.pause()  # accept jobs, never run them: the fuzz checks the front end only
    return app


def check(case) -> None:
    response = case.call()
    where = f"{case.method} {case.formatted_path} {case.query or ''} -> {response.status_code}"
    sync_wait_ended = response.status_code == 504 and response.json()["error"]["code"] == "timeout"
    assert response.status_code < 500 or sync_wait_ended, f"{where}: {response.text[:500]}"
    if response.status_code >= 400:
        assert set(response.json()["error"]) >= {"code", "message"}, where


def test_api_fuzz(fuzz_app):
    if schemathesis is None:
        skip_or_fail("schemathesis is not installed (pip install schemathesis)")
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", fuzz_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    documented = fuzz_app.test_client().get("/api/openapi.json").get_json()["paths"]
    # every documented operation but the document itself, which schemathesis leaves out
    assert len(operations) == sum(len(item) for item in documented.values()) - 1
    modes = list(schemathesis.GenerationMode)  # positive (valid per the spec) and negative (invalid) inputs
    for operation, mode in [(op, mode) for op in operations for mode in modes]:
        @given(case=operation.as_strategy(mode))
        @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case):
            check(case)

        try:
            fuzz()
        except Unsatisfiable:  # nothing to make invalid (e.g. GET /health takes no input)
            assert mode == schemathesis.GenerationMode.NEGATIVE, operation.label
