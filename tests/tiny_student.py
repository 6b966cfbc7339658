"""The tiny student of the tests, made the same way every time (the recorded fixtures rely on it)."""

from __future__ import annotations

from pathlib import Path


def build_tiny_model(out: Path) -> Path:
    """A 2-layer, 32-wide BERT with MiniLM's tokenizer: a real transformers model that trains in
    a blink, so graph tests exercise the real student code without the cost of the real weights.
    Its weights come from torch.manual_seed(0): the same on every run with the same torch."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from evokd.student.model import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("default"))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
