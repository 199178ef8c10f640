"""Releasing: the plan (every refusal before a build), publishing a candidate, signing, history, refresh."""
