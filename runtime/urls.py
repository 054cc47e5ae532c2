from django.urls import path

from . import callback_views, views

app_name = "runtime"

urlpatterns = [
    # Before the webhook's pattern, which would take "callback" for a webhook token.
    path("callback/<str:secret>", callback_views.callback, name="callback"),
    # The event name is checked by post_event, so a bad one gets a 400 rather than a 404.
    path("<str:token>/<str:event>", views.webhook, name="webhook"),
]
