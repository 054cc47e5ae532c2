from django.urls import include, path

from . import views
from .web import configure, devices, install, instances

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
    path("instances/", instances.instance_list, name="instance-list"),
    path("instances/<int:pk>/", instances.instance_detail, name="instance-detail"),
    path("instances/<int:pk>/enabled/", instances.set_enabled, name="instance-enabled"),
    path("instances/<int:pk>/configure/", configure.configure, name="instance-configure"),
    path("instances/<int:pk>/upgrade/", instances.upgrade, name="instance-upgrade"),
    path("instances/<int:pk>/uninstall/", instances.uninstall, name="instance-uninstall"),
    path("instances/<int:pk>/timers/<int:timer_pk>/paused/", instances.timer_pause, name="instance-timer-pause"),
    path("instances/<int:pk>/timers/<int:timer_pk>/run/", instances.timer_run_now, name="instance-timer-run"),
    path("instances/<int:pk>/runs/<int:run_pk>/replay/", instances.replay, name="instance-run-replay"),
    path("instances/<int:pk>/rpc/<str:handler>/", instances.call_rpc, name="instance-rpc"),
    path("", include("marketplace.accounts.urls")),
]
