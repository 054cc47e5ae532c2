from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from marketplace.accounts.signup import SignupView

admin.site.site_header = "Junction publishers' console"
admin.site.site_title = "Junction"
admin.site.index_title = "Integrations, versions and instances"

urlpatterns = [
    path("admin/", admin.site.urls),
    # allauth's pages (login, logout, password reset, e-mail), with sign-up asking for the
    # organization too; it comes first so it answers /accounts/signup/.
    path("accounts/signup/", SignupView.as_view(), name="account_signup"),
    path("accounts/", include("allauth.urls")),
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
