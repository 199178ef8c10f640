"""Tag pagination: RFC 8288 Link headers, followed or refused; pure, no registry."""

import pytest

from ci.core.errors import RegistryError
from ci.oci.registry import next_page

PAGE = "http://127.0.0.1:5000/v2/team/dar-backup/tags/list?n=100"


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        (None, None),
        ("", None),
        (
            '</v2/team/dar-backup/tags/list?last=1.0.99&n=100>; rel="next"',
            "http://127.0.0.1:5000/v2/team/dar-backup/tags/list?last=1.0.99&n=100",
        ),
        (
            "<http://127.0.0.1:5000/v2/team/dar-backup/tags/list?last=x&n=100>; rel=next",
            "http://127.0.0.1:5000/v2/team/dar-backup/tags/list?last=x&n=100",
        ),
        # Odd characters in last=: encoded and raw ; , inside the brackets, quoted params with ; inside.
        (
            '<?last=sha256-ab%2Ccd.sig;x,y&n=100>; type="a;b,c"; REL="next"',
            "http://127.0.0.1:5000/v2/team/dar-backup/tags/list?last=sha256-ab%2Ccd.sig;x,y&n=100",
        ),
        (
            '</v2/team/dar-backup/tags/list?last=a>; rel="prev", </v2/team/dar-backup/tags/list?last=z>; rel="next"',
            "http://127.0.0.1:5000/v2/team/dar-backup/tags/list?last=z",
        ),
        ('</v2/team/dar-backup/tags/list?last=a>; rel="prev"', None),
    ],
)
def test_next_page_from_link_header(link, expected):
    assert next_page(link, PAGE) == expected


@pytest.mark.parametrize(
    "link",
    [
        "garbage",
        '/v2/x?last=a; rel="next"',
        '</v2/x?last=a>; rel="next" trailing',
        '</v2/x?last=a; rel="next"',
    ],
)
def test_malformed_link_header_fails_closed(link):
    with pytest.raises(RegistryError, match="malformed Link header"):
        next_page(link, PAGE)


def test_next_page_on_another_host_is_refused():
    with pytest.raises(RegistryError, match=r"another host: https://elsewhere\.example"):
        next_page('<https://elsewhere.example/v2/x/tags/list?last=a>; rel="next"', PAGE)
