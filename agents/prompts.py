"""Prompt templates as files: `prompts/<task>/<agent>.<part>.j2`, overridable per file.

A user swaps any subset of prompts with `--prompts DIR` (same file names). Templates are checked
when a run starts, before any LLM call: a template that uses a variable its agent does not provide,
or a missing file, fails at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta

from evokd.config import TaskConfig
from evokd.core.files import read_text

# The variables each agent provides to its templates; anything else in a template is a typo.
VARIABLES: dict[str, set[str]] = {
    "analyst": {"task_description", "labels", "label_descriptions", "correct", "incorrect", "metrics",
                "round"},
    "generator": {"task_description", "labels", "label_descriptions", "n_hard", "n_easy", "round"},
    "verifier": {"task_description", "labels", "label_descriptions", "texts"},
    # The Verifier asked for a label it answers in a word, read as probabilities (loop.verifier).
    "verifier_probs": {"task_description", "labels", "label_descriptions", "texts"},
    "llm2llm": {"task_description", "labels", "label_descriptions", "example", "n"},
    "static": {"task_description", "labels", "label_descriptions", "label", "n", "round", "style"},
    "augment": {"task_description", "labels", "label_descriptions", "example", "n", "round"},
    "generator_labelled": {"task_description", "labels", "label_descriptions", "n_hard", "n_easy", "round"},
    # The default evokd loop's Analyst and Generator (docs/method.md).
    "diagnosis": {"task_description", "labels", "label_descriptions", "errors", "n_seen", "metrics", "real"},
    "targeted": {"task_description", "labels", "label_descriptions", "label", "weaknesses", "examples",
                 "n_hard", "n_easy", "round", "keys", "style"},
}
# Every template an agent may use, as (agent, part); a method names the ones it cannot run without.
FILES: list[tuple[str, str]] = [
    ("analyst", "system"), ("analyst", "user"),
    ("generator", "user"),
    ("verifier", "system"), ("verifier", "user"),
    ("verifier_probs", "system"), ("verifier_probs", "user"),
    ("llm2llm", "system"), ("llm2llm", "user"),
    ("static", "system"), ("static", "user"),
    ("augment", "system"), ("augment", "user"),
    # loop.separate_verifier = false: the Generator labels its own texts.
    ("generator_labelled", "user"),
    # The default loop's Analyst and Generator.
    ("diagnosis", "system"), ("diagnosis", "user"),
    ("targeted", "system"), ("targeted", "user"),
]


def task_variables(task: TaskConfig) -> dict[str, Any]:
    """The prompt variables every agent provides."""
    return {"task_description": task.description, "labels": task.labels,
            "label_descriptions": task.label_descriptions}


class PromptError(Exception):
    pass


@dataclass(frozen=True)
class Template:
    name: str  # e.g. "classification/analyst.user.j2"
    source: str  # where it was read from (override dir or packaged)
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def render(self, **variables: object) -> str:
        return _ENV.from_string(self.text).render(**variables).strip()


_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False,
                          autoescape=False)


def packaged_dir() -> Path:
    return Path(str(resources.files("evokd.prompts")))


def _check(template: Template, agent: str) -> None:
    try:
        used = meta.find_undeclared_variables(_ENV.parse(template.text))
    except jinja2.TemplateSyntaxError as exc:
        raise PromptError(f"{template.source}:{exc.lineno}: template syntax error: {exc.message}") from exc
    unknown = used - VARIABLES[agent]
    if unknown:
        raise PromptError(f"{template.source}: unknown template variable(s) {sorted(unknown)}; "
                          f"{agent} provides {sorted(VARIABLES[agent])}")


class PromptSet:
    """The templates of one task, each from the override dir if it has it, else packaged."""

    def __init__(self, task: str, override_dir: Path | None = None, needed: Iterable[str] = (),
                 needed_by: str = "") -> None:
        """`needed`: the templates ("diagnosis.user", ...) a run cannot go without, `needed_by` says why."""
        self.task = task
        self.override_dir = override_dir
        self.templates: dict[str, Template] = {}
        if override_dir is not None and not override_dir.is_dir():
            raise PromptError(f"{override_dir}: prompts directory not found")
        for agent, part in FILES:
            template = self._load(agent, part)
            if template is not None:
                _check(template, agent)
                self.templates[f"{agent}.{part}"] = template
        for name in needed:
            if name not in self.templates:
                raise PromptError(f"missing prompt {task}/{name}.j2" + (f" ({needed_by})" if needed_by else ""))

    def _load(self, agent: str, part: str) -> Template | None:
        filename = f"{agent}.{part}.j2"
        candidates = []
        if self.override_dir is not None:
            # Accept both DIR/<file> and DIR/<task>/<file> (the layout `prompts export` writes).
            candidates += [self.override_dir / self.task / filename, self.override_dir / filename]
        candidates.append(packaged_dir() / self.task / filename)
        for path in candidates:
            if path.is_file():
                return Template(f"{self.task}/{filename}", str(path), read_text(path, PromptError))
        return None

    def get(self, agent: str, part: str) -> Template | None:
        return self.templates.get(f"{agent}.{part}")

    def messages(self, agent: str, **variables: object) -> tuple[list[dict[str, str]], Template]:
        """System (when present) and user messages for an agent, and the user template used."""
        user = self.templates[f"{agent}.user"]
        out = []
        system = self.get(agent, "system")
        if system is not None:
            out.append({"role": "system", "content": system.render(**variables)})
        out.append({"role": "user", "content": user.render(**variables)})
        return out, user

    def digests(self) -> dict[str, str]:
        return {t.name: t.sha256 for t in self.templates.values()}
