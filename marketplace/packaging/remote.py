"""Pushing a package to a remote Junction through its REST API, with the standard library
only (urllib): a publisher's CI runs ``push_integration --server URL --token T`` with no
database of its own. The steps are those of a local push, each an API call:

1. ``PUT integrations/{slug}/draft/package/`` — the package becomes the draft;
   on 404 (no such integration of the caller's) ``POST integrations/`` creates it first,
   named after the manifest as a local push would, and the upload is retried;
2. ``POST …/draft/validate/`` — the report;
3. with ``publish``, ``POST …/draft/publish/ {notes}`` when the report is valid.

A refusal raises ``Refused`` (what the server refused, in the shape of a domain error's
``errors``); a transport failure or an answer no step expects raises ``RemoteError``.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

from .report import Issue, Report

API_PREFIX = "/api/v1/"
DRAFT_KEPT = "not published; the draft on the server holds the pushed package"


class RemoteError(Exception):
    """The server cannot be reached, refuses the token, or answers what no step expects."""


class Refused(Exception):
    """The server refused a write. ``errors`` maps a field (or ``__all__``) to messages;
    ``code`` is the package's refusal code when it gave one; ``kept`` says what of the push
    stays on the server (the draft, after a refused publish), None when nothing does."""

    def __init__(self, errors: dict[str, list[str]], *, code: str | None = None, kept: str | None = None) -> None:
        super().__init__("; ".join(m for ms in errors.values() for m in ms))
        self.errors, self.code, self.kept = errors, code, kept


@dataclass
class Answer:
    status: int
    body: Any  # parsed JSON, or None

    @property
    def error(self) -> dict:
        error = self.body.get("error") if isinstance(self.body, dict) else None
        return error if isinstance(error, dict) else {}

    @property
    def message(self) -> str:
        return str(self.error.get("message") or f"HTTP {self.status}")

    @property
    def fields(self) -> dict[str, list[str]]:
        """The refusal as a domain error's ``errors``: the fields, else the message."""
        fields = self.error.get("fields")
        if isinstance(fields, dict) and fields:
            return {("__all__" if k == "non_field_errors" else k): [str(m) for m in v] for k, v in fields.items()}
        return {"__all__": [self.message]}

    @property
    def report(self) -> Report | None:
        raw = self.error.get("report") if self.error else self.body
        return report_from(raw) if isinstance(raw, dict) and "errors" in raw else None


def report_from(data: dict) -> Report:
    """A report as the API sends it (``{valid, errors, warnings}``) back into a Report. Items
    are taken as they are, so a code this client does not know still prints."""
    def issues(items: Any) -> list[Issue]:
        return [Issue(code=i.get("code", ""), message=i.get("message", ""), file=i.get("file"), line=i.get("line"),
                      path=i.get("path")) for i in items or [] if isinstance(i, dict)]
    return Report(errors=issues(data.get("errors")), warnings=issues(data.get("warnings")))


class Client:
    """A token-authenticated JSON client of one Junction's ``/api/v1/``."""

    def __init__(self, server: str, token: str, *, timeout: float = 120) -> None:
        parsed = urllib.parse.urlsplit(server)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise RemoteError(f"--server must be an http(s) URL such as https://junction.example.com, not {server!r}")
        path = parsed.path.rstrip("/")
        path = path.removesuffix(API_PREFIX.rstrip("/"))  # a URL given with /api/v1 works too
        self.base = urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, path + API_PREFIX, "", ""))
        self.server = urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, path or "/", "", ""))
        self.token, self.timeout = token, timeout

    def url(self, path: str) -> str:
        return self.base + path

    def call(self, method: str, path: str, *, json_body: Any = None, file: tuple[str, bytes] | None = None) -> Answer:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json",
                   "User-Agent": "junction-push_integration"}
        data = None
        if file is not None:
            boundary = uuid.uuid4().hex
            data = multipart(boundary, "file", *file)
            headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
        elif json_body is not None:
            data = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.url(path), data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 (the URL is http(s))
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RemoteError(f"cannot reach {self.server}: {reason}") from None
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        answer = Answer(status, body)
        if status == 401:
            raise RemoteError(f"{self.server} refused the token: {answer.message}")
        if status == 429:
            raise RemoteError(f"{self.server} is throttling this token; try again later ({answer.message})")
        if status >= 500:
            raise RemoteError(f"{self.server} failed on {method} {path} (HTTP {status})")
        return answer


def multipart(boundary: str, field: str, filename: str, data: bytes) -> bytes:
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            "Content-Type: application/zip\r\n\r\n").encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode()


@dataclass
class RemotePush:
    slug: str
    name: str
    created: bool
    published: bool
    version: int | None
    report: Report


def push(client: Client, *, archive: bytes, manifest: dict, readme: str | None, slug: str | None,
         organization: str | None, publish: bool, notes: str) -> RemotePush:
    """Push ``archive`` (a package .zip whose parsed manifest is ``manifest``) to the
    integration ``slug``, or to the one named by the manifest's ``name``, created in
    ``organization`` (or the caller's only one) when it does not exist."""
    named = slug is not None
    slug = slug or _manifest_text(manifest, "name")
    created = False
    name = slug
    upload = _upload(client, slug, archive) if slug else None
    if upload is None or upload.status == 404:
        if named:
            raise RemoteError(f"no integration with the slug {slug!r} that this token publishes for on {client.server}")
        slug, name = _create(client, manifest, readme=readme, organization=organization)
        created = True
        upload = _upload(client, slug, archive)
    if upload.status not in (200, 201):
        refusal = _refusal(upload, f"PUT integrations/{slug}/draft/package/")
        if created:  # a local push creates nothing when the package is refused: neither does this
            try:
                answer = client.call("DELETE", f"integrations/{_q(slug)}/")
                removed, why = answer.status in (200, 204), f"HTTP {answer.status}"
            except RemoteError as exc:
                removed, why = False, str(exc)
            if not removed:
                refusal.kept = f"the integration {slug} created for this push is still on the server ({why})"
        raise refusal
    validated = client.call("POST", f"integrations/{_q(slug)}/draft/validate/")
    report = validated.report
    if validated.status != 200 or report is None:
        raise RemoteError(f"{client.server} answered HTTP {validated.status} to validate: {validated.message}")
    if not publish:
        return RemotePush(slug=slug, name=name, created=created, published=False, version=None, report=report)
    if not report.valid:
        raise Refused(report.error_dict(), kept=DRAFT_KEPT)
    published = client.call("POST", f"integrations/{_q(slug)}/draft/publish/", json_body={"notes": notes})
    if published.status != 201:
        refusal = _refusal(published, f"POST integrations/{slug}/draft/publish/")
        refusal.kept = DRAFT_KEPT
        raise refusal
    return RemotePush(slug=slug, name=name, created=created, published=True, version=published.body.get("number"),
                      report=report)


def _upload(client: Client, slug: str, archive: bytes) -> Answer:
    return client.call("PUT", f"integrations/{_q(slug)}/draft/package/", file=("package.zip", archive))


def _create(client: Client, manifest: dict, *, readme: str | None, organization: str | None) -> tuple[str, str]:
    """``POST integrations/`` as a local push names a new integration: title, slug from
    ``name``, summary from ``description``, description from README.md; public."""
    slug = _manifest_text(manifest, "name")
    name = _manifest_text(manifest, "title") or slug
    if not name:
        raise Refused({"manifest.name": ["the manifest needs a name (or title) to create an integration"]})
    body: dict[str, Any] = {"name": name, "summary": _manifest_text(manifest, "description")[:240],
                            "description": readme or "", "visibility": "public"}
    if slug:
        body["slug"] = slug
    if organization:
        body["organization"] = organization
    answer = client.call("POST", "integrations/", json_body=body)
    if answer.status == 201 and isinstance(answer.body, dict) and answer.body.get("slug"):
        return str(answer.body["slug"]), str(answer.body.get("name") or name)
    if answer.status in (400, 403, 404, 409) and answer.error:
        raise _refusal(answer, "POST integrations/")
    raise RemoteError(f"{client.server} could not create the integration (POST integrations/: HTTP {answer.status})")


def _refusal(answer: Answer, what: str) -> Refused:
    if answer.status in (400, 403, 404, 409, 413) and answer.error:
        report = answer.report
        if answer.error.get("code") == "not_publishable" and report is not None:
            return Refused(report.error_dict())
        code = report.errors[0].code if report is not None and report.errors else None
        return Refused(answer.fields, code=code)
    raise RemoteError(f"unexpected answer to {what}: HTTP {answer.status} {answer.message}")


def _manifest_text(manifest: dict, key: str) -> str:
    value = manifest.get(key)
    return value.strip() if isinstance(value, str) else ""


def _q(slug: str) -> str:
    return urllib.parse.quote(slug, safe="")
