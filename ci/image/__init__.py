"""What is checked on one image: its tools' versions, its labels, its SBOM."""
