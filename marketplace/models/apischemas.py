from __future__ import annotations

from django.db import models

from ..querysets import ApiPartQuerySet


class ApiEndpoint(models.Model):
    """One operation of an uploaded API document: ``GET /orders/{id}``. Rebuilt whenever the
    document is uploaded again; validation matches ``ctx.device.http`` calls against these."""

    schema = models.ForeignKey("marketplace.ApiSchema", on_delete=models.CASCADE, related_name="endpoints")
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500, help_text="As written in the document, templates included: /orders/{id}.")
    operation_id = models.CharField("operationId", max_length=200, blank=True)
    summary = models.CharField(max_length=500, blank=True)
    parameters = models.JSONField(default=list, blank=True, help_text="[{name, in, required, type, description}]")

    objects = ApiPartQuerySet.as_manager()

    class Meta:
        ordering = ["schema", "path", "method"]
        verbose_name = "API endpoint"
        constraints = [
            models.UniqueConstraint(fields=["schema", "method", "path"], name="%(app_label)s_%(class)s_unique_operation"),
        ]

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


class ApiModel(models.Model):
    """A named schema of an API document (``components.schemas`` or Swagger ``definitions``)."""

    schema = models.ForeignKey("marketplace.ApiSchema", on_delete=models.CASCADE, related_name="models")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)

    objects = ApiPartQuerySet.as_manager()

    class Meta:
        ordering = ["schema", "name"]
        verbose_name = "API model"
        constraints = [
            models.UniqueConstraint(fields=["schema", "name"], name="%(app_label)s_%(class)s_unique_name"),
        ]

    def __str__(self) -> str:
        return self.name


class ApiField(models.Model):
    """A property of an API model: name, type label (``string``, ``array of Pet``), required."""

    model = models.ForeignKey(ApiModel, on_delete=models.CASCADE, related_name="fields")
    name = models.CharField(max_length=200)
    type = models.CharField(max_length=100, blank=True)
    required = models.BooleanField(default=False)
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["model", "name"]
        verbose_name = "API field"
        constraints = [
            models.UniqueConstraint(fields=["model", "name"], name="%(app_label)s_%(class)s_unique_name"),
        ]

    def __str__(self) -> str:
        return f"{self.model}.{self.name}"
