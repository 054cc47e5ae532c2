"""Request bodies: JSON is parsed by ``jsonvalues.loads``, the platform's one strict parser,
so a body nested past Python's recursion limit is a 400 rather than a 500, and NaN, duplicate
keys or a lone surrogate are refused as everywhere else (docs/validation.md)."""
from __future__ import annotations

from rest_framework import parsers
from rest_framework.exceptions import ParseError

from .. import jsonvalues


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return jsonvalues.loads(stream.read() if stream is not None else b"")
        except jsonvalues.JSONRefused as exc:
            # Plain bad JSON keeps DRF's parse_error; the platform's own refusals keep their codes.
            code = "parse_error" if exc.code == "json_invalid" else exc.code
            raise ParseError(f"JSON parse error - {exc.message}", code=code) from None
