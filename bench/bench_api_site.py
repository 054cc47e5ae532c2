"""The site bench_api.py serves under gunicorn: Junction's own URLs plus, at
``/bare/integrations/``, the yardstick — a bare DRF ListAPIView with a ModelSerializer of
every Integration field, the project's default authentication, throttling and pagination,
and no visibility rule, filter or annotation. Not part of the application.

    gunicorn --pythonpath .,bench bench_api_site:application
"""
from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")

from django.conf import settings  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
settings.ROOT_URLCONF = __name__  # this module: read on the first request, after set-up

from django.urls import include, path  # noqa: E402
from rest_framework import generics, serializers  # noqa: E402

from marketplace.models import Integration  # noqa: E402


class BareIntegrationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Integration
        fields = "__all__"


class BareIntegrationList(generics.ListAPIView):
    queryset = Integration.objects.order_by("name", "pk")
    serializer_class = BareIntegrationSerializer


urlpatterns = [
    path("bare/integrations/", BareIntegrationList.as_view()),
    path("", include("marketplace.urls")),
]
