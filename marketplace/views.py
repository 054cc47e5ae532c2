"""Marketplace web pages."""
from __future__ import annotations

from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect
from django.templatetags.static import static
from django.views.generic import DetailView, ListView

from . import access
from .api.authentication import token_user
from .exceptions import NotFound
from .filtersets import CatalogFilterSet
from .models import Attachment, Integration


class IntegrationListView(ListView):
    template_name = "marketplace/integration_list.html"
    context_object_name = "integrations"
    paginate_by = 24

    def get_queryset(self):
        self.filterset = CatalogFilterSet(
            self.request.GET, queryset=Integration.objects.offered_to(self.request.user).for_listing()
        )
        return self.filterset.qs

    def get_context_data(self, **kwargs):
        return super().get_context_data(filter=self.filterset, **kwargs)


class IntegrationDetailView(DetailView):
    template_name = "marketplace/integration_detail.html"
    context_object_name = "integration"

    def get_object(self, queryset=None):
        try:
            return access.get_integration_for(self.request.user, self.kwargs["slug"])
        except NotFound as exc:
            raise Http404(exc.message) from None

    def get_context_data(self, **kwargs):
        integration = self.object
        return super().get_context_data(
            versions=integration.versions.published().order_by("-number"),
            attachments=integration.attachments.all(),
            **kwargs,
        )


def download_attachment(request, pk: int):
    """Attachments are always downloaded (Content-Disposition: attachment), never rendered.
    API responses link here (``download_url``), so an API token is accepted besides the session."""
    user = request.user
    if not user.is_authenticated:
        user = token_user(request) or user
    attachment = get_object_or_404(Attachment.objects.visible_to(user), pk=pk)
    response = FileResponse(
        attachment.file.open("rb"), as_attachment=True, filename=attachment.filename,
        content_type=attachment.content_type,
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "sandbox"
    return response


def favicon(request):
    """Browsers ask for /favicon.ico whatever the page says; the icon is an SVG in static/."""
    return redirect(static("favicon.svg"))
