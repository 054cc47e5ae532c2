from django.urls import path

from . import views

urlpatterns = [
    path("printer/api/status", views.printer_status),
    path("chat/messages", views.chat_message),
    path("chat/health", views.chat_health),
]
