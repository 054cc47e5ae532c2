"""Publisher-written Markdown (integration descriptions) as HTML that is safe to show.

Markdown may carry raw HTML, so what Python-Markdown makes is cleaned by nh3 (ammonia) to
an allow-list: text formatting, headings, lists, tables, code and links to http(s) and
mailto only. Scripts, styles, event handlers, images and ``javascript:`` links never reach
a page.
"""
from __future__ import annotations

import markdown
import nh3
from django.utils.safestring import SafeString, mark_safe

ALLOWED_TAGS = {
    "p", "br", "hr", "h2", "h3", "h4", "h5", "h6", "strong", "em", "b", "i", "code", "pre", "blockquote",
    "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th", "td",
}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}}


def render_markdown(text: str) -> SafeString:
    """``text`` (Markdown) as sanitized HTML. A top-level ``#`` heading becomes ``h2``:
    the page's own ``h1`` is the integration's name."""
    html = markdown.markdown(text or "", extensions=["tables", "fenced_code", "sane_lists"], output_format="html")
    html = html.replace("<h1>", "<h2>").replace("</h1>", "</h2>")
    clean = nh3.clean(
        html, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES, url_schemes={"http", "https", "mailto"},
        link_rel="nofollow noopener noreferrer",
    )
    return mark_safe(clean)  # noqa: S308 — cleaned to the allow-list above
