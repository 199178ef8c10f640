"""The engine seam: what the stages need from a container engine, and the two adapters."""
