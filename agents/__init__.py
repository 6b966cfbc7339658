"""agents package of evokd."""
