"""``/api/v1/``: one router for every resource (API.md lists them)."""
from rest_framework.routers import SimpleRouter

from .tokens import TokenViewSet

router = SimpleRouter()
router.register("tokens", TokenViewSet, basename="token")

urlpatterns = router.urls
