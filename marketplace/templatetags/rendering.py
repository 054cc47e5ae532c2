"""``{% load rendering %}``: ``{{ text|markdown }}`` renders publisher Markdown safely;
``{{ value|pretty_json }}`` shows a JSON value as JSON (escaped like any text)."""
from __future__ import annotations

import json

from django import template

from ..rendering import render_markdown

register = template.Library()


@register.filter(name="markdown")
def markdown_filter(text: str):
    return render_markdown(text)


@register.filter(name="pretty_json")
def pretty_json(value, style: str = "") -> str:
    """Indented, or on one line with ``pretty_json:"compact"`` (for a table cell)."""
    if style == "compact":
        return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(", ", ": "))
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
