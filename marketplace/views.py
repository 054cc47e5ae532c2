"""Marketplace web pages."""
from __future__ import annotations

from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404
from django.views.generic import DetailView, ListView

from .filtersets import IntegrationFilterSet
from .models import Attachment, Integration


class IntegrationListView(ListView):
    template_name = "marketplace/integration_list.html"
    context_object_name = "integrations"
    paginate_by = 24

    def get_queryset(self):
        self.filterset = IntegrationFilterSet(
            self.request.GET, queryset=Integration.objects.visible_to(self.request.user).for_listing()
        )
        return self.filterset.qs.order_by("name")

    def get_context_data(self, **kwargs):
        return super().get_context_data(filter=self.filterset, **kwargs)


class IntegrationDetailView(DetailView):
    template_name = "marketplace/integration_detail.html"
    context_object_name = "integration"

    def get_queryset(self):
        return Integration.objects.visible_to(self.request.user).select_related("category", "owner")

    def get_context_data(self, **kwargs):
        integration = self.object
        return super().get_context_data(
            versions=integration.versions.published().order_by("-number"),
            attachments=integration.attachments.all(),
            **kwargs,
        )


def download_attachment(request, pk: int):
    """Attachments are always downloaded (Content-Disposition: attachment), never rendered."""
    attachment = get_object_or_404(Attachment.objects.select_related("integration"), pk=pk)
    if not Integration.objects.visible_to(request.user).filter(pk=attachment.integration_id).exists():
        raise Http404
    response = FileResponse(
        attachment.file.open("rb"), as_attachment=True, filename=attachment.filename,
        content_type=attachment.content_type,
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "sandbox"
    return response
