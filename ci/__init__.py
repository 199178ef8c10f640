"""The dar-backup image pipeline: base, final, test and release stages over an engine seam."""
