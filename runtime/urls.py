from django.urls import path

from . import views

app_name = "runtime"

urlpatterns = [
    # The event name is checked by post_event, so a bad one gets a 400 rather than a 404.
    path("<str:token>/<str:event>", views.webhook, name="webhook"),
]
