"""A small client for the OCI distribution (Docker Registry v2) API: tags, manifests, delete.

Used by the release gates and for floating tags, the same for either engine. It fails closed:
any answer other than a clear "not found" is an error. Errors never carry credentials, and
credentials go only over HTTPS (plain HTTP to this machine alone). Every answer is read
within a size cap and every request within a deadline, so a hostile or broken registry can
neither fill the memory of the process that holds the credentials nor hold it forever.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import http.client
import io
import ipaddress
import json
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from contextvars import ContextVar
from dataclasses import dataclass, field
from email.message import Message
from http.client import HTTPMessage
from typing import IO, TYPE_CHECKING

from ci.core.errors import RegistryError, RegistryUnreachable
from ci.oci.auth import RegistryAuth, read_secret, split_repo
from ci.oci.media import EMPTY, EMPTY_CONTENT, MANIFEST, MANIFEST_TYPES, Descriptor, is_digest, placeholder_manifest

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

# Tags are read a page at a time; a listing longer than this is refused rather than truncated.
TAGS_PAGE_SIZE = 100
MAX_TAG_PAGES = 500

MIB = 1 << 20
# The most of an answer that is read; one longer is refused. Manifests: distribution's own
# limit. Blobs: only image configs are read (kilobytes); layers only ever go up.
MANIFEST_LIMIT = 4 * MIB
TAGS_PAGE_LIMIT = 4 * MIB
TOKEN_LIMIT = 1 * MIB
BLOB_LIMIT = 16 * MIB
# Answers nothing reads (to a PUT, POST, DELETE; error pages).
ANSWER_LIMIT = 1 * MIB
# Seconds a request may take, from connecting to its answer's last byte; an upload a second
# more per MiB it sends.
DEADLINE = 60.0
UPLOAD_BYTES_PER_SECOND = MIB


def is_loopback(host: str) -> bool:
    """host[:port] is this machine: `localhost`, or an address in 127.0.0.0/8 or ::1, parsed as one.

    A name is not an address: `127.example` may resolve anywhere.
    """
    name = urllib.parse.urlsplit(f"//{host}").hostname
    if name == "localhost":
        return True
    try:
        return name is not None and ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def may_carry_credentials(url: str) -> bool:
    """Credentials (a password, a token) may go to url: over HTTPS, or over plain HTTP to this machine."""
    parts = urllib.parse.urlsplit(url)
    return parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.netloc))


def base_url(host: str) -> str:
    # Like the Docker daemon: plain HTTP only for the loopback registry.
    return f"{'http' if is_loopback(host) else 'https'}://{host}"


_LINK_VALUE = re.compile(r'\s*<([^>]*)>\s*((?:;\s*[\w*-]+\s*=\s*(?:"[^"]*"|[^;,"]*)\s*)*)(?:,|$)')
_LINK_PARAM = re.compile(r';\s*([\w*-]+)\s*=\s*(?:"([^"]*)"|([^;,"]*))')


def next_page(link: str | None, current: str) -> str | None:
    """The absolute URL of the `rel="next"` page in an RFC 8288 Link header, None on the last page.

    Fails closed: a header that does not parse, or a next page on another host (which would
    receive the credentials), is an error rather than the end of the listing.
    """
    if link is None or not link.strip():
        return None
    position, found = 0, None
    while position < len(link):
        match = _LINK_VALUE.match(link, position)
        if match is None or match.end() == position:
            raise RegistryError(f"malformed Link header from the registry: {link!r}")
        params = {k.lower(): (quoted or bare).strip() for k, quoted, bare in _LINK_PARAM.findall(match.group(2))}
        if "next" in params.get("rel", "").lower().split():
            found = match.group(1)
        position = match.end()
    if found is None:
        return None
    return same_origin(current, str(found), "next page")


def same_origin(current: str, reference: str, what: str) -> str:
    """reference resolved against current; refused when on another host (credentials would go there)."""
    url = urllib.parse.urljoin(current, reference)
    here, there = urllib.parse.urlsplit(current), urllib.parse.urlsplit(url)
    if (there.scheme, there.netloc) != (here.scheme, here.netloc):
        raise RegistryError(f"the registry's {what} is on another host: {there.scheme}://{there.netloc}")
    return url


class _NoCredentialsElsewhere(urllib.request.HTTPRedirectHandler):
    """Follows a redirect, dropping the credentials when it leads to another host (Docker Hub's blob CDN)."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        here, there = urllib.parse.urlsplit(req.full_url), urllib.parse.urlsplit(newurl)
        if new is not None and (here.scheme, here.netloc) != (there.scheme, there.netloc):
            new.remove_header("Authorization")
        return new


# The monotonic time by which the request being sent must be answered in full.
_DEADLINE: ContextVar[float] = ContextVar("registry_request_deadline")


class _DeadlineReader(io.RawIOBase):
    """A connection's reads, each allowed only the time left to its request's deadline.

    A socket timeout alone bounds the wait for each byte, not for the answer: a server that
    drips its headers or body a byte a second would hold the request for as long as it likes.
    """

    def __init__(self, fp: io.BufferedReader, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._fp, self._sock, self._deadline = fp, sock, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the deadline passed")
        self._sock.settimeout(left)
        return self._fp.readinto1(buffer)

    def close(self) -> None:
        self._fp.close()
        super().close()


class _Response(http.client.HTTPResponse):
    def __init__(
        self, sock: socket.socket, debuglevel: int = 0, method: str | None = None, url: str | None = None
    ) -> None:
        super().__init__(sock, debuglevel, method, url)
        # The status line and headers are read through it too (begin() comes after __init__).
        self.fp = io.BufferedReader(_DeadlineReader(self.fp, sock, _DEADLINE.get()))


class _HTTPConnection(http.client.HTTPConnection):
    response_class = _Response


class _HTTPSConnection(http.client.HTTPSConnection):
    response_class = _Response


class _HTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_HTTPConnection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        # No context given: the connection makes the default one, which verifies the certificate.
        return self.do_open(_HTTPSConnection, req)


def _lower(headers: Message) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


_OPENER = urllib.request.build_opener(_NoCredentialsElsewhere, _HTTPHandler, _HTTPSHandler)
# No registry answered: a name that does not resolve, a connection refused or without a route.
_UNREACHABLE = (errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH)


def unreachable(reason: object) -> bool:
    """Connecting failed before any registry answered (what a base may fall back on a local image for).

    Not a timeout, a reset or a TLS failure: something was there, and it did not answer as a registry.
    """
    return isinstance(reason, socket.gaierror) or (isinstance(reason, OSError) and reason.errno in _UNREACHABLE)


def read_capped(answer: IO[bytes], limit: int, what: str) -> bytes:
    body = answer.read(limit + 1)
    if len(body) > limit:
        raise RegistryError(f"{what}: the answer is longer than {limit // MIB} MiB")
    return body


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Registry:
    repo: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    deadline: float = DEADLINE
    # The bearer token of the last challenge, a secret as the password is; the challenge it answers.
    _token: str | None = field(default=None, init=False, repr=False)
    _challenge: str = field(default="", init=False, repr=False)

    @classmethod
    def logged_in(cls, repo: str, auth: RegistryAuth | None) -> Registry:
        """A client for repo with the run's credentials, read from their reference only here."""
        if auth is None:
            return cls(repo)
        return cls(repo, auth.username, read_secret(auth.password))

    def __post_init__(self) -> None:
        self.host, self.name = split_repo(self.repo)

    def _send(
        self, method: str, url: str, headers: dict[str, str], data: bytes | None, limit: int = ANSWER_LIMIT
    ) -> Response:
        request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
        seconds = self.deadline + len(data or b"") / UPLOAD_BYTES_PER_SECOND
        what = f"{method} {urllib.parse.urlsplit(url).path} on {self.host}"
        deadline = _DEADLINE.set(time.monotonic() + seconds)
        try:
            try:
                # The socket timeout bounds connecting and sending; reading is bounded by the deadline.
                with _OPENER.open(request, timeout=seconds) as answer:
                    return Response(answer.status, _lower(answer.headers), read_capped(answer, limit, what))
            except urllib.error.HTTPError as err:
                with err:
                    return Response(err.code, _lower(err.headers), read_capped(err, limit, what))
        except urllib.error.URLError as err:
            if unreachable(err.reason):
                raise RegistryUnreachable(f"registry {self.host} unreachable: {err.reason}") from None
            raise RegistryError(f"registry {self.host}: {err.reason}") from None
        except TimeoutError:
            raise RegistryError(f"{what}: no whole answer within {seconds:.0f} s") from None
        except (OSError, http.client.HTTPException) as err:
            raise RegistryError(f"{what}: {str(err) or type(err).__name__}") from None
        finally:
            _DEADLINE.reset(deadline)

    def _basic(self) -> dict[str, str]:
        if self.username is None or self.password is None:
            return {}
        pair = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}

    def _fetch_token(self, challenge: str) -> None:
        fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        if "realm" not in fields:
            raise RegistryError(f"registry {self.host} sent an unusable auth challenge")
        # The realm gets the password and hands out the token the registry then gets, both in the
        # clear on plain HTTP: refused before anything is sent, unless the realm is this machine.
        if not may_carry_credentials(fields["realm"]):
            realm = urllib.parse.urlsplit(fields["realm"])
            raise RegistryError(
                f"registry {self.host}'s token realm {realm.scheme}://{realm.netloc} is not HTTPS: refused"
            )
        query = urllib.parse.urlencode({k: v for k, v in fields.items() if k in ("service", "scope")})
        answer = self._send("GET", f"{fields['realm']}?{query}", self._basic(), None, TOKEN_LIMIT)
        if answer.status != 200:
            raise RegistryError(f"registry {self.host} refused the credentials (HTTP {answer.status})")
        try:
            body = json.loads(answer.body)
            token = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"registry {self.host}'s token service answered no token")
        self._token = token

    def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
        limit: int = ANSWER_LIMIT,
    ) -> Response:
        return self.request_url(method, f"{base_url(self.host)}/v2/{self.name}/{path}", headers, data, limit)

    def request_url(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
        limit: int = ANSWER_LIMIT,
    ) -> Response:
        auth = {"Authorization": f"Bearer {self._token}"} if self._token else self._basic()
        answer = self._send(method, url, {**(headers or {}), **auth}, data, limit)
        challenge = answer.headers.get("www-authenticate", "")
        # A new challenge is a new scope (a push needs more than a pull): fetch a token for it once.
        if answer.status == 401 and challenge.lower().startswith("bearer") and challenge != self._challenge:
            self._challenge = challenge
            self._fetch_token(challenge)
            answer = self._send(method, url, {**(headers or {}), "Authorization": f"Bearer {self._token}"}, data, limit)
        if answer.status in (401, 403):
            who = f"user {self.username!r}" if self.username else "anonymous access"
            raise RegistryError(f"registry {self.host} refused {who} (HTTP {answer.status})")
        return answer

    def tags(self) -> list[str]:
        """Every tag, page by page: a gate that saw only the first page would fail open."""
        url: str | None = f"{base_url(self.host)}/v2/{self.name}/tags/list?n={TAGS_PAGE_SIZE}"
        seen: set[str] = set()
        tags: list[str] = []
        while url is not None:
            if url in seen:
                raise RegistryError(f"listing tags of {self.repo}: the registry sent the page {url} twice")
            if len(seen) == MAX_TAG_PAGES:
                raise RegistryError(f"listing tags of {self.repo}: more than {MAX_TAG_PAGES} pages")
            seen.add(url)
            answer = self.request_url("GET", url, limit=TAGS_PAGE_LIMIT)
            if answer.status == 404 and not tags:
                return []
            if answer.status != 200:
                raise RegistryError(f"listing tags of {self.repo}: HTTP {answer.status}")
            tags += json.loads(answer.body).get("tags") or []
            url = next_page(answer.headers.get("link"), url)
        return tags

    def digest(self, reference: str) -> str | None:
        """The manifest digest of a tag or digest; None only when the registry says not found."""
        answer = self.request("HEAD", f"manifests/{reference}", {"Accept": MANIFEST_TYPES})
        if answer.status == 404:
            return None
        if answer.status != 200 or "docker-content-digest" not in answer.headers:
            raise RegistryError(f"reading {self.repo}:{reference}: HTTP {answer.status}")
        return answer.headers["docker-content-digest"]

    def manifest(self, reference: str) -> tuple[str, bytes]:
        """(media type, bytes) of the manifest or index a tag or digest names; by digest, refused
        unless the bytes hash to it (a registry could serve anything under a digest it was asked for)."""
        answer = self.request("GET", f"manifests/{reference}", {"Accept": MANIFEST_TYPES}, limit=MANIFEST_LIMIT)
        if answer.status != 200:
            raise RegistryError(f"reading manifest {self.repo}:{reference}: HTTP {answer.status}")
        if is_digest(reference) and "sha256:" + hashlib.sha256(answer.body).hexdigest() != reference:
            raise RegistryError(f"manifest {reference} of {self.repo}: the bytes have another digest")
        return answer.headers.get("content-type", json.loads(answer.body).get("mediaType", "")), answer.body

    def blob(self, digest: str) -> bytes:
        """A blob's bytes, refused unless they hash to digest."""
        answer = self.request("GET", f"blobs/{digest}", limit=BLOB_LIMIT)
        if answer.status != 200:
            raise RegistryError(f"reading blob {digest} of {self.repo}: HTTP {answer.status}")
        if "sha256:" + hashlib.sha256(answer.body).hexdigest() != digest:
            raise RegistryError(f"blob {digest} of {self.repo}: the bytes have another digest")
        return answer.body

    def put_manifest(self, reference: str, media_type: str, body: bytes) -> str:
        """Store a manifest under a tag or its own digest; returns the digest the registry serves."""
        put = self.request("PUT", f"manifests/{reference}", {"Content-Type": media_type}, body)
        if put.status not in (200, 201):
            raise RegistryError(f"storing manifest {self.repo}:{reference}: HTTP {put.status}")
        return put.headers.get("docker-content-digest") or "sha256:" + hashlib.sha256(body).hexdigest()

    def upload_blob(self, digest: str, data: bytes) -> None:
        """A monolithic upload (POST, then PUT with the digest), skipped when the blob is there."""
        present = self.request("HEAD", f"blobs/{digest}")
        if present.status == 200:
            return
        if present.status != 404:
            raise RegistryError(f"checking blob {digest}: HTTP {present.status}")
        start = self.request("POST", "blobs/uploads/")
        if start.status != 202 or "location" not in start.headers:
            raise RegistryError(f"starting an upload to {self.repo}: HTTP {start.status}")
        url = same_origin(f"{base_url(self.host)}/v2/{self.name}/", start.headers["location"], "upload location")
        joiner = "&" if "?" in url else "?"
        headers = {"Content-Type": "application/octet-stream"}
        done = self.request_url("PUT", f"{url}{joiner}digest={urllib.parse.quote(digest)}", headers, data)
        if done.status != 201:
            raise RegistryError(f"uploading blob {digest}: HTTP {done.status}")

    def tag(self, digest: str, tag: str) -> str:
        """Point `tag` at the manifest `digest`; returns the digest the registry now serves for it."""
        media_type, body = self.manifest(digest)
        return self.put_manifest(tag, media_type, body)

    def untag(self, tag: str, note: str) -> str:
        """Remove tag and nothing else: "removed", or "not allowed" (the tag then names an empty placeholder).

        Distribution 2.x deletes manifests by digest only, taking every tag that names the
        manifest with it: deleting the image a candidate tag names would delete its release too.
        The tag is pointed at a placeholder of its own, which is then deleted.
        """
        self.upload_blob(Descriptor.of(EMPTY, EMPTY_CONTENT).digest, EMPTY_CONTENT)
        placeholder = self.put_manifest(tag, MANIFEST, placeholder_manifest(note))
        outcome = self.delete(placeholder)
        return "removed" if outcome in ("removed", "absent") else outcome

    def delete(self, digest: str) -> str:
        """Remove a manifest: "removed", "absent" (nothing to remove) or "not allowed" by this registry."""
        answer = self.request("DELETE", f"manifests/{digest}")
        if answer.status in (200, 202):
            return "removed"
        if answer.status == 404:
            return "absent"
        if answer.status == 405:
            return "not allowed"
        raise RegistryError(f"deleting {digest}: HTTP {answer.status}")
