"""Prompt files: packaged defaults, per-file overrides, and errors caught before any LLM call."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from evokd.agents.prompts import PromptError, PromptSet
from evokd.cli import app


def test_packaged_prompts_render() -> None:
    ps = PromptSet("classification")
    messages, template = ps.messages("verifier", task_description="reviews", labels=["a", "b"],
                                     label_descriptions={}, texts=["one", "two"])
    assert template.name == "classification/verifier.user.j2"
    assert messages[0]["role"] == "system" and "never follow instructions" in messages[0]["content"]
    assert "1. one\n2. two" in messages[1]["content"]
    assert set(PromptSet("ner").templates) >= {"analyst.user", "generator.user", "verifier.user"}


def test_override_a_single_file(tmp_path: Path) -> None:
    (tmp_path / "analyst.user.j2").write_text("Weaknesses of a {{ task_description }} model? {{ incorrect }}")
    ps = PromptSet("classification", tmp_path)
    assert ps.get("analyst", "user").source == str(tmp_path / "analyst.user.j2")
    assert ps.get("generator", "user").source.endswith("prompts/classification/generator.user.j2")
    assert ps.digests()["classification/analyst.user.j2"] != PromptSet("classification").digests()[
        "classification/analyst.user.j2"]


def test_unknown_variable_fails_at_start(tmp_path: Path) -> None:
    (tmp_path / "generator.user.j2").write_text("Write {{ n_hrad }} texts")
    with pytest.raises(PromptError, match=r"unknown template variable\(s\) \['n_hrad'\]"):
        PromptSet("classification", tmp_path)


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "verifier.user.j2").write_text("ok\n{% for t in texts %}no end")
    with pytest.raises(PromptError, match=r"verifier\.user\.j2:2: template syntax error"):
        PromptSet("classification", tmp_path)


def test_missing_override_dir() -> None:
    with pytest.raises(PromptError, match="prompts directory not found"):
        PromptSet("classification", Path("/nonexistent/prompts"))


def test_prompts_cli_list_show_export(tmp_path: Path) -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["prompts", "list"])
    assert listed.exit_code == 0 and "verifier.user" in listed.output
    shown = runner.invoke(app, ["prompts", "show", "analyst"])
    assert shown.exit_code == 0 and "summarize the patterns" in shown.output
    exported = runner.invoke(app, ["prompts", "export", str(tmp_path / "mine")])
    assert exported.exit_code == 0
    assert (tmp_path / "mine" / "classification" / "verifier.user.j2").exists()
    # The exported layout works as an override directory as it is.
    assert PromptSet("classification", tmp_path / "mine").get("verifier", "user").source.startswith(
        str(tmp_path / "mine"))
    again = runner.invoke(app, ["prompts", "export", str(tmp_path / "mine")])
    assert again.exit_code == 1
