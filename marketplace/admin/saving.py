"""Change forms that save through services.

Django's admin validates the form, then calls ``save_model``/``save_related`` inside one
transaction. A service may still refuse at that point (a rule the form cannot see, a
race, a permission). The refusal is raised out of that transaction, so everything the
request wrote is rolled back, and the page is rendered again with the service's errors
attached to the form's fields (``marketplace.formerrors``, shared with the other front
doors' forms): nothing is half-written and the user sees why.
"""
from __future__ import annotations

from contextlib import contextmanager

from django.db import transaction
from django.http import HttpResponseRedirect
from django.urls import reverse

from ..exceptions import DomainError
from ..formerrors import with_refusal


class Refused(Exception):
    def __init__(self, error: DomainError):
        super().__init__(error.message)
        self.error = error


class ServiceSaveMixin:
    """For ModelAdmins whose ``save_model``/``save_formset`` call services: raise
    ``Refused`` there (``refusing()`` does it) and this re-renders the form with the
    errors after the rollback."""

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except Refused as refused:
            # The transaction of the first pass is rolled back; this pass validates the
            # same POST with the service's errors added, so it renders the form.
            request._junction_refusal = refused.error.errors
            return super().changeform_view(request, object_id, form_url, extra_context)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        errors = getattr(request, "_junction_refusal", None)
        return with_refusal(form, errors) if errors else form


@contextmanager
def refusing():
    """``with refusing(): service(...)`` turns a DomainError into ``Refused``; the savepoint
    keeps the surrounding transaction usable until it is rolled back."""
    try:
        with transaction.atomic():
            yield
    except DomainError as exc:
        raise Refused(exc) from exc


class ServiceDeleteMixin:
    """Deletes go through a service, one object at a time: ``delete_with_service`` names
    it. A bulk delete reports each refusal and goes on with the rest."""

    delete_select_related: tuple[str, ...] = ()
    # False when the service commits steps of its own (uninstalling runs handlers, which
    # must not run inside a transaction): the admin's wrapping transaction is left out.
    delete_in_transaction = True

    def delete_with_service(self, request, obj) -> None:
        raise NotImplementedError

    def refusal_label(self, obj) -> str:
        return str(obj)

    def delete_model(self, request, obj):
        self.delete_with_service(request, obj)

    def delete_view(self, request, object_id, extra_context=None):
        """A refused delete (the service's DomainError) shows its reason on the object's
        page instead of failing; the admin's transaction has rolled back its log entry."""
        from .mixins import report

        try:
            if self.delete_in_transaction:
                return super().delete_view(request, object_id, extra_context)
            return self._delete_view(request, object_id, extra_context)
        except DomainError as exc:
            report(request, exc)
            opts = self.model._meta
            return HttpResponseRedirect(
                reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[object_id],
                        current_app=self.admin_site.name)
            )

    def delete_queryset(self, request, queryset):
        from .mixins import report

        if self.delete_select_related:
            queryset = queryset.select_related(*self.delete_select_related)
        for obj in queryset:
            try:
                self.delete_with_service(request, obj)
            except DomainError as exc:
                report(request, exc, prefix=f"{self.refusal_label(obj)}: ")
