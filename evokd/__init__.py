"""evokd: evolving knowledge distillation from a teacher LLM into a small student model."""

__version__ = "0.1.0"
