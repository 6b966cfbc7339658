"""prompts package of evokd."""
