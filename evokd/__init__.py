"""evokd: evolving knowledge distillation from a teacher LLM into a small student model."""

import os

# On a 2-core machine shared with the teacher server, OpenMP threads that spin while waiting
# made student training 5-100x slower; passive waiting costs nothing measurable when idle.
# It must be set before torch is first imported, which every evokd entry point does after this.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.2.0"
