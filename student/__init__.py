"""student package of evokd."""
