"""`evokd export RUN DIR --format onnx [--quantize int8]`: the run's best student as ONNX.

DIR gets `model.onnx`, the student's tokenizer files and `config.json`, `labels.txt` (one label
name per line, in the head's order), `evokd-export.json` (task type, labels, max_length,
quantization, source run, self-check) and a README showing how to call it.

Exporter: torch's own `torch.onnx.export` (see `_export_graph` for why not optimum). Quantization:
onnxruntime's dynamic int8 quantization of the weights (`quantize_dynamic`), the standard recipe
for transformer encoders on a CPU.

The export checks itself before DIR is written: the run's dev set is predicted by the PyTorch
student (`Student.predict`, the loop's own code path) and by the ONNX model through onnxruntime;
they must agree on at least 99 % of the predictions (98 % for int8): labels for classification,
word tags for NER. An export that falls short is not written, and `ExportError` says by how much.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from evokd.config import RunConfig
from evokd.core.records import Prediction

from .data import Sample
from .loading import replace_dir
from .model import Student, load_student
from .onnx_predict import META_FILE, MODEL_FILE, ExportError, is_export, load_exported
from .predictor import Item
from .torch_predict import TorchBackend

# Agreement with the PyTorch student the self-check asks for, by quantization.
MIN_AGREEMENT = {None: 0.99, "int8": 0.98}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "config.json")
OPSET = 18


@dataclass
class CheckResult:
    dev_samples: int
    unit: str  # what is compared: "labels" (classification) or "word tags" (NER)
    compared: int
    agreeing: int
    agreement: float
    required: float
    passed: bool
    # Classification: dev accuracy of each; NER: word-tag accuracy. Shows what a disagreement cost.
    torch_accuracy: float
    onnx_accuracy: float


@dataclass
class ExportReport:
    directory: str
    model_bytes: int
    quantize: str | None
    check: CheckResult
    seconds: float
    int8_step: str | None = None  # which of INT8_STEPS passed


def _export_graph(model: torch.nn.Module, path: Path, input_names: list[str], task_type: str) -> None:
    """Trace the student into ONNX with a dynamic batch and sequence length.

    torch.onnx rather than optimum's exporter: optimum-onnx 0.1.0 (and optimum 2.x, which moved
    its exporter there) pins transformers below the version evokd installs, so `evokd[onnx]`
    would downgrade the library the student is trained with. The student is a plain encoder with
    a linear head, which torch's TorchScript-based exporter handles exactly; with
    `do_constant_folding` and opset 18 the graph matches what optimum writes for BERT-like models.
    """
    model = model.eval().cpu()
    dummy = {name: torch.ones((2, 8), dtype=torch.long) for name in input_names}
    axes = {name: {0: "batch", 1: "sequence"} for name in input_names}
    axes["logits"] = {0: "batch", 1: "sequence"} if task_type == "ner" else {0: "batch"}

    class Logits(torch.nn.Module):
        """The model returning its logits tensor alone (a ModelOutput is not an ONNX output)."""

        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args: torch.Tensor) -> torch.Tensor:
            return self.inner(**dict(zip(input_names, args, strict=True))).logits

    # The tracer warns about Python conditions in transformers' masking code; they hold for every
    # shape (no padding offset, no causal mask in an encoder), and the self-check runs the result.
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Logits(model), tuple(dummy[name] for name in input_names), str(path),
            input_names=input_names, output_names=["logits"], dynamic_axes=axes,
            opset_version=OPSET, do_constant_folding=True, dynamo=False,
        )


# What `--quantize int8` tries, in order, until the self-check passes: every weight matrix in int8
# (per output channel; activations are quantized on the fly), then the attention output projections
# kept in fp32, then the feed-forward input projections as well. On a weak SST-2 student (dev
# accuracy 0.72, many texts near p = 0.5) full int8 flipped 8 of 300 dev labels (97.3 %); keeping
# either group in fp32 brought it to 98.3-98.7 % for 2-10 MB more.
INT8_STEPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("all weight matrices int8", ()),
    ("attention output projections kept fp32", ("attention/output/dense/",)),
    ("attention output and feed-forward input projections kept fp32",
     ("attention/output/dense/", "intermediate/dense/")),
)


def _quantize_int8(source: Path, target: Path, keep_fp32: tuple[str, ...]) -> int:
    """Dynamic int8 quantization of `source` into `target`; returns how many MatMuls stay fp32."""
    import onnx  # the onnx extra, only for --quantize int8
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source), load_external_data=False).graph
    excluded = [n.name for n in graph.node if n.op_type == "MatMul" and any(k in n.name for k in keep_fp32)]
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # onnxruntime logs advice about static pre-processing on the root logger
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True,
                         extra_options={"MatMulConstBOnly": True}, nodes_to_exclude=excluded)
    finally:
        root.setLevel(level)
    return len(excluded)


def self_check(student: Student, directory: Path, dev: list[Sample], quantize: str | None,
               reference: list[Prediction] | None = None) -> CheckResult:
    """Predict `dev` with the PyTorch student (or take its `reference` predictions) and with the
    ONNX model in `directory`; compare."""
    reference = student.predict(dev) if reference is None else reference
    predictor, _ = load_exported(directory)
    pairs: list[tuple[Any, Any, Any]]  # (PyTorch's, ONNX's, gold) label or tag
    if student.task.type == "ner":
        items = [Item.from_tokens(s.tokens or [], f"dev {i}") for i, s in enumerate(dev)]
        ours = [r.tags or [] for r in predictor.predict(items)]
        theirs = [p.tags or [] for p in reference]
        gold = [s.tags or [] for s in dev]
        pairs = [(a, b, g) for x, y, z in zip(theirs, ours, gold, strict=True) for a, b, g in zip(x, y, z, strict=True)]
    else:
        labels = [r.label for r in predictor.predict([Item(text=s.text) for s in dev])]
        pairs = [(p.label, o, s.label) for p, o, s in zip(reference, labels, dev, strict=True)]
    n = len(pairs)
    agreeing = sum(a == b for a, b, _ in pairs)
    required = MIN_AGREEMENT[quantize]
    agreement = agreeing / n if n else 1.0
    unit = "word tags" if student.task.type == "ner" else "labels"
    return CheckResult(dev_samples=len(dev), unit=unit, compared=n, agreeing=agreeing, agreement=agreement,
                       required=required, passed=agreement >= required,
                       torch_accuracy=sum(a == g for a, _, g in pairs) / n if n else 0.0,
                       onnx_accuracy=sum(b == g for _, b, g in pairs) / n if n else 0.0)


def _readme(meta: dict[str, Any]) -> str:
    ner = meta["task_type"] == "ner"
    example = "Barack Obama visited Paris." if ner else "A gripping, beautifully acted film."
    decode = (
        "# logits: [batch, sub-tokens, tags]; a word's tag is the argmax on its first sub-token\n"
        "tags, previous = [], None\n"
        "for position, word in enumerate(enc.word_ids):\n"
        "    if word is not None and word != previous:\n"
        "        tags.append(labels[int(logits[0, position].argmax())])\n"
        "    previous = word\n"
        "print(tags)  # BIO tags, one per word"
        if ner else
        "probs = np.exp(logits - logits.max(-1, keepdims=True))\n"
        "probs /= probs.sum(-1, keepdims=True)\n"
        "print(labels[int(probs[0].argmax())], float(probs[0].max()))"
    )
    inputs = ", ".join(f'"{n}"' for n in meta["inputs"])
    return f"""# {meta['task_type']} student, exported to ONNX

Exported by `evokd export` from `{meta['source_run']}` ({meta['created']}).
{f"Weights quantized to int8 (onnxruntime dynamic quantization: {meta['int8']['step']})."
 if meta['quantize'] else 'fp32 weights.'}
Self-check on the run's {meta['check']['dev_samples']} dev samples: {meta['check']['agreement']:.2%} of
{'word tags' if ner else 'labels'} agree with the PyTorch student (required {meta['check']['required']:.0%}).

Files: `model.onnx` (inputs {inputs}, output `logits`), `tokenizer.json` (Hugging Face `tokenizers`),
`labels.txt` (label names in output order), `evokd-export.json` (task type, labels, max_length {meta['max_length']}).

## With evokd (its `onnx` extra; torch is not imported)

```bash
evokd predict --onnx . "{example}"
evokd predict --onnx . --input texts.csv --output predictions.jsonl
```

## With onnxruntime and tokenizers only

```python
import numpy as np, onnxruntime as ort
from tokenizers import Tokenizer

tok = Tokenizer.from_file("tokenizer.json")
tok.enable_truncation(max_length={meta['max_length']})
labels = open("labels.txt", encoding="utf-8").read().splitlines()
session = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])

enc = tok.encode({'["Barack", "Obama", "visited", "Paris", "."], is_pretokenized=True' if ner else repr(example)})
feeds = {{"input_ids": np.array([enc.ids]), "attention_mask": np.array([enc.attention_mask]),
         "token_type_ids": np.array([enc.type_ids])}}
logits = session.run(None, {{k: v for k, v in feeds.items() if k in {{i.name for i in session.get_inputs()}}}})[0]
{decode}
```

For batches, pad `input_ids` with the tokenizer's pad id and `attention_mask` with 0.
"""


def export_student(student_dir: Path, cfg: RunConfig, dev: list[Sample], out_dir: Path,
                   quantize: str | None = None, say: Callable[[str], None] = lambda _: None,
                   source: str = "") -> ExportReport:
    """Export the student saved in `student_dir` (a run's best student, for the run's config `cfg`)
    to `out_dir`, replacing an earlier export there, once it agrees with the PyTorch student on
    `dev` (the run's dev samples). `source` names the run in the export's metadata."""
    if quantize not in MIN_AGREEMENT:
        raise ExportError(f"--quantize {quantize}: only int8 is supported")
    started = time.perf_counter()
    student_dir = Path(student_dir)
    if not student_dir.exists():
        raise ExportError(f"{student_dir}: no student saved yet")
    out_dir = Path(out_dir)
    if out_dir.exists() and not is_export(out_dir) and any(out_dir.iterdir()):
        raise ExportError(f"{out_dir}: exists and is not an earlier export; choose an empty or new directory")
    say("loading the student")
    student = load_student(student_dir, cfg.task, cfg.student)
    model: Any = student.model  # type: ignore[attr-defined]
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.with_name(f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}")
    staging.mkdir()
    try:
        input_names = TorchBackend(model).input_names
        say("exporting to ONNX")
        fp32 = staging / ("model.fp32.onnx" if quantize else MODEL_FILE)
        _export_graph(model, fp32, input_names, cfg.task.type)
        model.to(student.device)  # type: ignore[attr-defined]
        for name in TOKENIZER_FILES:
            if (student_dir / name).is_file():
                shutil.copyfile(student_dir / name, staging / name)
        label_names = list(student.label_names)  # type: ignore[attr-defined]
        (staging / "labels.txt").write_text("".join(f"{name}\n" for name in label_names), encoding="utf-8")
        meta: dict[str, Any] = {
            "format": "onnx", "task_type": cfg.task.type, "task_name": cfg.task.name, "labels": label_names,
            "text_column": cfg.task.text_column,
            "entity_types": list(cfg.task.labels) if cfg.task.type == "ner" else None,
            "max_length": student.max_length,  # type: ignore[attr-defined]
            "inputs": input_names, "quantize": quantize, "opset": OPSET,
            "source_run": source, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (staging / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        say("checking the export on the run's dev data")
        reference = student.predict(dev)
        for step, keep in INT8_STEPS if quantize else [("fp32", ())]:
            if quantize:
                say(f"quantizing to int8: {step}")
                meta["int8"] = {"step": step, "fp32_matmuls": _quantize_int8(fp32, staging / MODEL_FILE, keep)}
            check = self_check(student, staging, dev, quantize, reference)
            if check.passed:
                break
        if quantize:
            fp32.unlink()
        if not check.passed:
            raise ExportError(
                f"self-check failed: the ONNX model agrees with the PyTorch student on {check.agreeing}/"
                f"{check.compared} dev {check.unit} "
                f"({check.agreement:.2%}), below the required {check.required:.0%}; nothing was written to {out_dir}")
        meta["check"] = asdict(check)
        (staging / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        (staging / "README.md").write_text(_readme(meta), encoding="utf-8")
        model_bytes = (staging / MODEL_FILE).stat().st_size
        replace_dir(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportReport(directory=str(out_dir), model_bytes=model_bytes, quantize=quantize, check=check,
                        seconds=time.perf_counter() - started, int8_step=meta.get("int8", {}).get("step"))
