"""The console's own intermediate pages (publish notes, fork), in the admin's look."""
from __future__ import annotations

from django.contrib.admin import helpers
from django.template.response import TemplateResponse
from django.urls import reverse


def render_action_page(
    model_admin, request, *, title: str, form, submit_label: str, intro: str = "", objects=(), action: str | None = None,
    selected=(), cancel_url: str | None = None,
) -> TemplateResponse:
    """A form page. With ``action`` it posts back to the changelist as the second step of
    that admin action (the selected ids ride along); without, to the page's own URL."""
    opts = model_admin.opts
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": opts, "title": title, "form": form, "intro": intro, "objects": objects,
        "submit_label": submit_label, "action": action, "selected": selected,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "cancel_url": cancel_url or reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"),
        "media": model_admin.media + form.media,
    }
    return TemplateResponse(request, "admin/marketplace/action_form.html", context)
