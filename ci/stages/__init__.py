"""The build and test stages: base and final, the FULL → DIFF → INCR story, the upgrade check."""
