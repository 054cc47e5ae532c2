"""``/api/v1/``: one router for every resource (API.md lists them)."""
from rest_framework.routers import SimpleRouter

from runtime.api import RunViewSet, TimerViewSet

from .tokens import TokenViewSet

router = SimpleRouter()
router.register("tokens", TokenViewSet, basename="token")
router.register("runs", RunViewSet, basename="run")
router.register("timers", TimerViewSet, basename="timer")

urlpatterns = router.urls
