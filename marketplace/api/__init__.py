"""The REST API (``/api/v1/``): DRF views over the same services, querysets and access
helpers as the console. ``urls.py`` lists the resources; each module holds one resource's
serializers and views; ``errors.py`` the one error shape."""
