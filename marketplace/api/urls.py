"""``/api/v1/``: one router for every resource (API.md lists them)."""
from rest_framework.routers import SimpleRouter

from .apischemas import ApiSchemaViewSet
from .attachments import AttachmentViewSet
from .categories import CategoryViewSet
from .integrations import IntegrationViewSet
from .tokens import TokenViewSet

router = SimpleRouter()
router.register("tokens", TokenViewSet, basename="token")
router.register("categories", CategoryViewSet, basename="category")
router.register("integrations", IntegrationViewSet, basename="integration")
router.register(r"integrations/(?P<slug>[^/.]+)/attachments", AttachmentViewSet, basename="integration-attachment")
router.register("api-schemas", ApiSchemaViewSet, basename="apischema")

urlpatterns = router.urls
