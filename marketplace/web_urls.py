from django.urls import include, path

from . import views

app_name = "marketplace"

urlpatterns = [
    path("", views.IntegrationListView.as_view(), name="integration-list"),
    path("integrations/<slug:slug>/", views.IntegrationDetailView.as_view(), name="integration-detail"),
    path("attachments/<int:pk>/download/", views.download_attachment, name="attachment-download"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("", include("marketplace.accounts.urls")),
]
