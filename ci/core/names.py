"""What the image is called and says of itself, and where it comes from when nothing else says."""

from __future__ import annotations

IMAGE_NAME = "dar-backup"
TITLE = "dar-backup"
DESCRIPTION = "dar, par2 and the dar-backup wrapper for verified container backups, run as a non-root user"
AUTHORS = "dar-backup-image maintainers"
DEFAULT_SOURCE = "https://github.com/per2jensen/dar-backup-image"
