"""Helpers the test packages share: sample values, a local registry, the Docker client, a recording Dagger session."""
