"""Validate an integration package (a folder or a .zip) without a running server.

    python manage.py validate_integration PACKAGE [--json] [--integration SLUG]

With --json, prints one object {"valid", "errors", "warnings"} (items {code, message, file,
line, path}); otherwise one line per problem and a verdict. Exit 0 when valid, 1 when not.
"""
from __future__ import annotations

import json
import sys

from django.core.management.base import BaseCommand, CommandError

from marketplace.models import Integration
from marketplace.packaging.packages import validate_path


class Command(BaseCommand):
    help = "Validate an integration package (folder or .zip). Exit 0 when valid, 1 when not."

    def add_arguments(self, parser):
        parser.add_argument("package", help="a package folder or .zip file")
        parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
        parser.add_argument(
            "--integration", metavar="SLUG",
            help="also resolve apiSchema names against the documents uploaded for this integration",
        )

    def handle(self, *args, package, json=False, integration=None, **options):
        target = None
        if integration:
            target = Integration.objects.filter(slug=integration).first()
            if target is None:
                raise CommandError(f"no integration with the slug {integration!r}")
        report = validate_path(package, integration=target)
        if json:
            self.stdout.write(_dumps(report.as_dict()))
        else:
            self.stdout.write(report.as_text())
        self.stdout.flush()
        sys.exit(0 if report.valid else 1)


def _dumps(data) -> str:
    return json.dumps(data, ensure_ascii=False)
