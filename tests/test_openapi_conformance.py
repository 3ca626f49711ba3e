"""The served OpenAPI document and the live API agree: schemathesis (its ``st`` CLI, as a user runs it) against a
real gunicorn web with a real worker, positive and negative data over every documented operation, with all its
checks (not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
response_schema_conformance, negative_data_rejection, positive_data_acceptance, ...): 0 failures, 0 errors.

Deterministic (``generation.deterministic``: the same cases every run) and bounded for CI (MAX_EXAMPLES per
operation and phase, one schemathesis worker; streams end at web.stream_timeout_sec). Two documented exceptions,
each limited to the one operation it concerns (see CONFIG):
- POST /api/message may answer 504 ``timeout`` (documented: the job is still running after web.sync_timeout_sec
  and goes on); that is not a server error.
- POST /api/command: the command language (``/task use ID``, ``/config set KEY VALUE``, ...) is parsed by the
  server; a well-formed JSON body with an unknown command or bad arguments is a documented 400, which a JSON
  schema cannot express, so positive_data_acceptance accepts 400 there.
"""

from __future__ import annotations

import subprocess

import pytest
import requests

from support.helpers import BIN, skip_or_fail

#: Test cases per operation and phase (the run stays around a minute or two on a busy 2-core machine).
MAX_EXAMPLES = 15
CONFIG = f"""
[generation]
mode = "all"
deterministic = true
max-examples = {MAX_EXAMPLES}
database = "none"

[phases.stateful]
enabled = false

[[operations]]
include-path = "/api/message"
include-method = "POST"
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "504"]

[[operations]]
include-path = "/api/command"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "400", "401", "403", "404", "409", "429"]
"""


@pytest.fixture
def conformance_web(make_env):
    """A worker and a gunicorn web on one install; short waits so sync and streaming calls stay bounded."""
    from support.web import start_gunicorn
    env = make_env(web={"sync_timeout_sec": 5, "stream_timeout_sec": 1})
    env.start_worker()
    return start_gunicorn(env)


@pytest.mark.timeout(600)
def test_every_operation_conforms_to_the_openapi_document(conformance_web, tmp_path):
    st = BIN / "st"
    if not st.exists():
        skip_or_fail("schemathesis is not installed (pip install -e '.[test]')")
    server = conformance_web
    document = requests.get(f"{server.url}/api/openapi.json", timeout=30).json()
    # every documented operation but GET /api/openapi.json itself, which schemathesis leaves out
    operations = sum(len(item) for item in document["paths"].values()) - 1
    assert {"/api/status", "/api/jobs/{job_id}/events", "/health", "/metrics"} <= set(document["paths"])
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    report = tmp_path / "report.xml"
    run = subprocess.run(
        [str(st), "--config-file", str(config), "run", f"{server.url}/api/openapi.json", "--checks", "all",
         "--workers", "1", "--phases", "examples,coverage,fuzzing", "--request-timeout", "30", "--no-color",
         "--report", "junit", "--report-junit-path", str(report)],
        capture_output=True, text=True, timeout=540, cwd=tmp_path)
    out = run.stdout + run.stderr
    assert run.returncode == 0, f"schemathesis found mismatches:\n{out[-12000:]}\n{server.logs()}"
    assert f"Selected: {operations}/{operations}" in out and f"Tested: {operations}" in out, out[-3000:]
    assert "Traceback" not in server.logs(), server.logs()
