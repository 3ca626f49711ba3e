"""Docs stay in sync with the code: settings, CLI commands, and the three documents agree."""

from alter0.cli.app import build_parser
from alter0.config_docs import settings_markdown
from support.helpers import ROOT


def test_configuration_doc_is_generated_from_the_settings_table():
    assert (ROOT / "docs" / "configuration.md").read_text() == settings_markdown(), \
        "run: python -m alter0.config_docs > docs/configuration.md"


def test_every_cli_command_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    missing = [name for name in sub.choices if f"alter0 {name}" not in readme]
    assert not missing, f"README does not mention: {missing}"


def test_readme_architecture_and_features_exist_and_name_the_same_stages():
    for name in ("README.md", "ARCHITECTURE.md", "docs/features.md"):
        text = (ROOT / name).read_text()
        for word in ("route", "generate", "close"):
            assert word in text, f"{name} does not mention {word}"


def test_every_slash_command_is_in_the_readme():
    from alter0.commands import ADMIN, COMMANDS, TASK_COMMANDS
    readme = (ROOT / "README.md").read_text()
    names = list(COMMANDS) + list(ADMIN) + [f"/task {t}" for t in TASK_COMMANDS]
    assert not [n for n in names if n not in readme]
