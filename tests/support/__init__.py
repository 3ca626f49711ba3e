"""Test support, one module per job: helpers.py (paths, skip-or-fail, ports, processes, configs, polling),
install.py (Alter0Env: a temp install with real processes and the real CLI), stub_engine.py (StubQueue: the
in-process queue engine), web.py (the Flask app on a stub runtime, gunicorn, NDJSON, CSRF) model_stub.py
(a local imitation of the OpenAI Responses and Anthropic Messages APIs) and telegram_api.py (a local Telegram Bot
API with faults on demand). Fixtures are in tests/conftest.py."""
