"""graph package of evokd."""
