from django.urls import include, path

from . import views
from .web import instances

app_name = "marketplace"

urlpatterns = [
    path("", views.IntegrationListView.as_view(), name="integration-list"),
    path("integrations/<slug:slug>/", views.IntegrationDetailView.as_view(), name="integration-detail"),
    path("attachments/<int:pk>/download/", views.download_attachment, name="attachment-download"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("instances/", instances.instance_list, name="instance-list"),
    path("instances/<int:pk>/", instances.instance_detail, name="instance-detail"),
    path("instances/<int:pk>/enabled/", instances.set_enabled, name="instance-enabled"),
    path("instances/<int:pk>/upgrade/", instances.upgrade, name="instance-upgrade"),
    path("instances/<int:pk>/uninstall/", instances.uninstall, name="instance-uninstall"),
    path("instances/<int:pk>/timers/<int:timer_pk>/paused/", instances.timer_pause, name="instance-timer-pause"),
    path("instances/<int:pk>/timers/<int:timer_pk>/run/", instances.timer_run_now, name="instance-timer-run"),
    path("instances/<int:pk>/runs/<int:run_pk>/replay/", instances.replay, name="instance-run-replay"),
    path("instances/<int:pk>/rpc/<str:handler>/", instances.call_rpc, name="instance-rpc"),
    path("", include("marketplace.accounts.urls")),
]
