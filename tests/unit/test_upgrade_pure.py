"""Which release the upgrade check reads, and how the reports name both sides."""

from ci.engines.seam import Image
from ci.oci.registry import Registry
from ci.release.plan import previous_release
from ci.stages.upgrade import Previous, versions_note
from tests.support.samples import HISTORY_ENTRY

UNUSED = Registry("127.0.0.1:1/dar-backup")  # never asked: these cases need no registry


def test_previous_release_is_the_last_history_entry_by_digest():
    newer = {**HISTORY_ENTRY, "tag": "1.1.0", "image_ref": "r/dar-backup@sha256:" + "b" * 64}
    assert previous_release("r/dar-backup", [HISTORY_ENTRY, newer], ["9.9.9"], UNUSED) == newer["image_ref"]


def test_no_previous_release_without_history_or_semver_tags():
    assert previous_release("r/dar-backup", [], ["latest", "sha256-" + "a" * 64 + ".sig", "1.2"], UNUSED) is None


def test_the_report_names_both_sides():
    previous = Previous(Image("x", "x"), "r@sha256:aa", "1.0.0", {"dar-backup": "1.1.10", "dar": "2.7.8"})
    assert versions_note(previous, {"dar-backup": "1.1.11", "dar": "2.7.13"}) == (
        "upgrade from 1.0.0 (r@sha256:aa): previous: dar-backup 1.1.10, dar 2.7.8; "
        "candidate: dar-backup 1.1.11, dar 2.7.13"
    )
