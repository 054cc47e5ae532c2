"""``/api/v1/``: one router for every resource (API.md lists them), and explicit paths for
what hangs under an integration's slug."""
from django.urls import path
from rest_framework.routers import SimpleRouter

from . import drafts, versions
from .devices import DeviceViewSet
from .instances import InstanceViewSet
from .tokens import TokenViewSet

router = SimpleRouter()
router.register("tokens", TokenViewSet, basename="token")
router.register("devices", DeviceViewSet, basename="device")
router.register("instances", InstanceViewSet, basename="instance")

urlpatterns = router.urls

# The draft and the versions of an integration (marketplace/api/drafts.py, versions.py).
urlpatterns += [
    path("integrations/<slug:slug>/draft/", drafts.DraftView.as_view(), name="integration-draft"),
    path("integrations/<slug:slug>/draft/package/", drafts.DraftPackageView.as_view(), name="integration-draft-package"),
    path("integrations/<slug:slug>/draft/validate/", drafts.DraftValidateView.as_view(), name="integration-draft-validate"),
    path("integrations/<slug:slug>/draft/publish/", drafts.DraftPublishView.as_view(), name="integration-draft-publish"),
    path("integrations/<slug:slug>/versions/", versions.VersionListView.as_view(), name="integration-versions"),
    path("integrations/<slug:slug>/versions/<int:number>/", versions.VersionDetailView.as_view(),
         name="integration-version"),
    path("integrations/<slug:slug>/versions/<int:number>/package/", versions.VersionPackageView.as_view(),
         name="integration-version-package"),
    path("integrations/<slug:slug>/diff/", versions.DiffView.as_view(), name="integration-diff"),
]
