"""Push an integration package from CI/CD: import it as the draft, validate, optionally publish.

    python manage.py push_integration PACKAGE [--integration SLUG] [--organization SLUG]
                                              [--publish --notes "..."] [--user USERNAME] [--json]

Without --integration, the organization's integration whose slug is the manifest's ``name``
(or whose name is its ``title``) receives the draft; when there is none, a new integration is
created. Prints what it did. Exit 0 on success; 1 when the package is refused or invalid (the
draft is still saved when not publishing), or when publishing is refused (nothing is saved).
"""
from __future__ import annotations

import json
import sys

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from marketplace.exceptions import DomainError
from marketplace.models import Integration, Organization
from marketplace.packaging.packages import PackageRefused, read_package
from marketplace.services.packages import push_package


class Command(BaseCommand):
    help = "Import a package (folder or .zip) as the draft of an integration, validate it, optionally publish it."

    def add_arguments(self, parser):
        parser.add_argument("package", help="a package folder or .zip file")
        parser.add_argument("--integration", metavar="SLUG", help="the integration that receives the draft")
        parser.add_argument("--organization", metavar="SLUG", help="the organization owning (or to own) the integration")
        parser.add_argument("--publish", action="store_true", help="publish the draft when it is valid")
        parser.add_argument("--notes", default="", help="release notes, required with --publish")
        parser.add_argument("--user", metavar="USERNAME", help="act as this user (their permissions apply)")
        parser.add_argument("--json", action="store_true", help="print the outcome as one JSON object")

    def handle(self, *args, package, integration=None, organization=None, publish=False, notes="", user=None,
               json=False, **options):
        self.as_json = json
        target = org = actor = None
        if integration:
            target = Integration.objects.filter(slug=integration).first()
            if target is None:
                raise CommandError(f"no integration with the slug {integration!r}")
        if organization:
            org = Organization.objects.filter(slug=organization).first()
            if org is None:
                raise CommandError(f"no organization with the slug {organization!r}")
        if user:
            actor = get_user_model().objects.filter(username=user).first()
            if actor is None:
                raise CommandError(f"no user named {user!r}")
        try:
            pkg = read_package(package)
        except PackageRefused as exc:
            return self.refuse({exc.file or "package": [exc.message]}, code=exc.code)
        if pkg.manifest_error is None and target is None and org is None:
            slug = pkg.manifest.get("name")
            target = Integration.objects.filter(slug=slug).first() if isinstance(slug, str) and slug else None
            if target is None:
                raise CommandError("pass --integration SLUG, or --organization SLUG to create the integration")
        try:
            result = push_package(package=pkg, integration=target, organization=org, publish=publish, notes=notes,
                                  user=actor)
        except DomainError as exc:
            return self.refuse(exc.errors)
        version = result.version
        summary = {
            "status": "published" if result.published else "drafted",
            "integration": result.integration.slug,
            "created": result.created,
            "version": version.number,
            **result.report.as_dict(),
        }
        if self.as_json:
            self.stdout.write(_dumps(summary))
        else:
            if result.created:
                self.stdout.write(f"created integration {result.integration.slug} ({result.integration.name})")
            if result.published:
                self.stdout.write(f"published {result.integration.slug} v{version.number}")
            else:
                self.stdout.write(f"saved the draft of {result.integration.slug}")
            self.stdout.write(result.report.as_text())
        self.stdout.flush()
        sys.exit(0 if result.report.valid else 1)

    def refuse(self, errors: dict, *, code: str | None = None):
        if self.as_json:
            self.stdout.write(_dumps({"status": "refused", "code": code, "errors": errors}))
        else:
            self.stderr.write("refused: nothing was saved")
            for where, messages in errors.items():
                for message in messages:
                    self.stderr.write(f"  {where}: {message}" if where != "__all__" else f"  {message}")
        self.stdout.flush()
        sys.exit(1)


def _dumps(data) -> str:
    return json.dumps(data, ensure_ascii=False)
