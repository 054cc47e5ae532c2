from django.urls import include, path

from . import views
from .web import devices, install

app_name = "marketplace"

urlpatterns = [
    path("", views.IntegrationListView.as_view(), name="integration-list"),
    path("integrations/<slug:slug>/", views.IntegrationDetailView.as_view(), name="integration-detail"),
    path("integrations/<slug:slug>/install/", install.install, name="install"),
    path("devices/", devices.device_list, name="device-list"),
    path("devices/add/", devices.device_add, name="device-add"),
    path("devices/<int:pk>/edit/", devices.device_edit, name="device-edit"),
    path("devices/<int:pk>/delete/", devices.device_delete, name="device-delete"),
    path("devices/<int:pk>/test/", devices.device_test, name="device-test"),
    path("attachments/<int:pk>/download/", views.download_attachment, name="attachment-download"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("", include("marketplace.accounts.urls")),
]
