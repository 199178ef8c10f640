"""Releasing: the release stage (stage.py) and what it relies on — gates, build history, the registry."""
