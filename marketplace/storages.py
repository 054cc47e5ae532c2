"""Where uploaded files live. Icons are public: the default storage, under MEDIA_ROOT, which
the development server and the production proxy serve at MEDIA_URL. Attachments may belong to
private integrations: they live under JUNCTION_PRIVATE_MEDIA_ROOT, which nothing serves, and
reach a browser only through the download view, which checks who is asking."""
from __future__ import annotations

from django.conf import settings
from django.core.files.storage import FileSystemStorage, storages
from django.utils.functional import cached_property


class PrivateFileStorage(FileSystemStorage):
    """A file system storage outside MEDIA_ROOT whose files have no URL: ``url()`` raises,
    so no page can link past the view that checks access."""

    @cached_property
    def base_location(self):
        return self._value_or_setting(self._location, settings.JUNCTION_PRIVATE_MEDIA_ROOT)

    @cached_property
    def base_url(self):
        return None

    def _clear_cached_properties(self, setting, **kwargs):
        super()._clear_cached_properties(setting, **kwargs)
        if setting == "JUNCTION_PRIVATE_MEDIA_ROOT":  # tests point it at a folder of their own
            self.__dict__.pop("base_location", None)
            self.__dict__.pop("location", None)


def private_storage() -> PrivateFileStorage:
    """The ``private`` entry of STORAGES, for ``FileField(storage=...)``: a callable, so the
    migration names this function rather than a folder of the machine that wrote it."""
    return storages["private"]
