"""`dar -V` as Debian's dar prints it (bookworm 2.7.8, trixie 2.7.17), and the features the image promises."""

from __future__ import annotations

import pytest

from ci.core.errors import OutputError
from ci.image.dar_features import LINES, NANOSECONDS, REQUIRED, features, label_value, missing, parse
from tests.support.samples import DAR_V_BOOKWORM as BOOKWORM
from tests.support.samples import DAR_V_TRIXIE as TRIXIE


def test_bookworm_has_every_promised_feature_and_lacks_threads_librsync_libcurl():
    present = features(parse(BOOKWORM))
    assert missing(present) == []
    assert set(LINES) - present == {"threads", "librsync", "libcurl"}
    assert NANOSECONDS in present


def test_trixie_has_every_feature_dar_lists_on_linux():
    options = parse(TRIXIE)
    assert options["Remote repository (libcurl)"].startswith("YES (libcurl/8.14.1")
    assert features(options) == {*LINES, NANOSECONDS}


def test_every_named_line_is_printed_by_both_releases():
    for output in (BOOKWORM, TRIXIE):
        assert set(LINES.values()) <= set(parse(output))


def test_a_dar_built_without_a_promised_feature_is_named_in_one_line():
    without_gpgme = BOOKWORM.replace("Public key ciphers (gpgme)   : YES", "Public key ciphers (gpgme)   : NO")
    assert missing(features(parse(without_gpgme))) == [
        "dar lacks the feature 'gpgme' (dar -V line 'Public key ciphers (gpgme)' is not YES)"
    ]


def test_a_dropped_line_counts_as_missing():
    without_ea = "".join(line for line in BOOKWORM.splitlines(keepends=True) if "Extended Attributes" not in line)
    assert [line.split("'")[1] for line in missing(features(parse(without_ea)))] == ["ea"]


def test_microsecond_timestamps_are_not_nanoseconds():
    write = "Timestamp write accuracy     : "
    coarse = BOOKWORM.replace(f"{write}1 nanosecond", f"{write}1 microsecond")
    assert missing(features(parse(coarse))) == [
        f"dar lacks the feature {NANOSECONDS!r} (Timestamp read accuracy and Timestamp write accuracy of 1 nanosecond)"
    ]


def test_output_without_the_options_section_is_refused():
    with pytest.raises(OutputError, match="dar -V printed no compile-time options"):
        parse("dar: command not found\n")


def test_the_label_value_is_sorted_and_stable():
    value = label_value(features(parse(BOOKWORM)))
    assert value.split(",") == sorted(value.split(","))
    assert value == label_value(features(parse(BOOKWORM)))
    assert set(REQUIRED) <= set(value.split(","))
