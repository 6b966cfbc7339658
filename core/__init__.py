"""The bottom layer: records, samples, text and BIO helpers, the trace and the run folder.

Every other part of evokd may import it; it imports nothing of evokd (not even the config).
"""
