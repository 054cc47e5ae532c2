"""``/api/v1/``: one router for every resource (API.md lists them)."""
from rest_framework.routers import SimpleRouter

from .devices import DeviceViewSet
from .instances import InstanceViewSet
from .tokens import TokenViewSet

router = SimpleRouter()
router.register("tokens", TokenViewSet, basename="token")
router.register("devices", DeviceViewSet, basename="device")
router.register("instances", InstanceViewSet, basename="instance")

urlpatterns = router.urls
