"""The bottom layer: errors, logging, platforms, versions, the run's config, labels, reports; no I/O beyond files."""
