"""``/api/v1/runs/`` and ``/api/v1/timers/`` (runtime/api.py), included by the project's urls.py
next to marketplace/api/urls.py: the marketplace does not import the runtime."""
from rest_framework.routers import SimpleRouter

from .api import RunViewSet, TimerViewSet

router = SimpleRouter()
router.register("runs", RunViewSet, basename="run")
router.register("timers", TimerViewSet, basename="timer")

urlpatterns = router.urls
