from django.apps import AppConfig


class MarketplaceConfig(AppConfig):
    name = "marketplace"
    verbose_name = "Junction marketplace"

    def ready(self) -> None:
        from . import signals  # noqa: F401  (file clean-up receivers)
