from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

admin.site.site_header = "Junction publishers' console"
admin.site.site_title = "Junction"
admin.site.index_title = "Integrations, versions and instances"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/v1/", include("marketplace.api.urls")),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    path("hooks/", include("runtime.urls")),  # per-instance webhooks: /hooks/<token>/<event>
    path("", include("marketplace.web_urls")),
]

if settings.DEBUG:
    # Public uploads (icons) in development; production serves MEDIA_ROOT from the front proxy.
    # Attachments are not under MEDIA_ROOT: only the download view, which checks access, serves them.
    urlpatterns += [
        *static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT),
        path("demo/", include("marketplace.demo.urls")),
    ]
