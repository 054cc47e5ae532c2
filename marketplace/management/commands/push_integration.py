"""Push an integration package from CI/CD: import it as the draft, validate, optionally publish.

    python manage.py push_integration PACKAGE [--integration SLUG] [--organization SLUG]
                                              [--publish --notes "..."] [--user USERNAME] [--json]
                                              [--server URL --token TOKEN]

Without --integration, the organization's integration whose slug is the manifest's ``name``
(or whose name is its ``title``) receives the draft; when there is none, a new integration is
created. Prints what it did. Exit 0 on success; 1 when the package is refused or invalid (the
draft is still saved when not publishing), or when publishing is refused (nothing is saved).

With --server (and --token, or JUNCTION_API_TOKEN in the environment) the same push goes to a
remote Junction through its REST API (``marketplace.packaging.remote``): no database is used,
and the token's user is the one acting. The integration is the one named by --integration, or
the token's integration whose slug is the manifest's ``name``, created (in --organization, or
the user's only organization) when there is none. Output and exit codes are the local ones;
a publish the server refuses leaves the pushed package in the draft there, and says so.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from marketplace.exceptions import DomainError
from marketplace.models import Integration, Organization
from marketplace.packaging import remote
from marketplace.packaging.packages import PackageRefused, build_zip, read_package
from marketplace.services.packages import push_package
from marketplace.services.publishing import NOTES_REQUIRED

TOKEN_VARIABLE = "JUNCTION_API_TOKEN"


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
        parser.add_argument("--server", metavar="URL", help="push to this remote Junction through its API (no database)")
        parser.add_argument("--token", metavar="TOKEN",
                            help=f"a personal API token for --server (default: ${TOKEN_VARIABLE})")

    def handle(self, *args, package, integration=None, organization=None, publish=False, notes="", user=None,
               json=False, server=None, token=None, **options):
        self.as_json = json
        if server:
            return self.handle_remote(package, server=server, token=token or os.environ.get(TOKEN_VARIABLE),
                                      integration=integration, organization=organization, publish=publish,
                                      notes=notes, user=user)
        if token:
            raise CommandError("--token goes with --server")
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
        self.done(slug=result.integration.slug, name=result.integration.name, created=result.created,
                  published=result.published, version=result.version.number, report=result.report)

    def handle_remote(self, package, *, server, token, integration, organization, publish, notes, user):
        if user:
            raise CommandError("--user is for local pushes: with --server, the token's user acts")
        if not token:
            raise CommandError(f"--server needs --token TOKEN (or ${TOKEN_VARIABLE})")
        try:
            client = remote.Client(server, token)
        except remote.RemoteError as exc:
            raise CommandError(str(exc)) from None
        # Read here first: a refused package is refused before anything is sent, as locally.
        try:
            pkg = read_package(package)
        except PackageRefused as exc:
            return self.refuse({exc.file or "package": [exc.message]}, code=exc.code)
        if pkg.manifest_error is not None:
            return self.refuse({"manifest.json": [pkg.manifest_error[1]]})
        if publish and not (notes or "").strip():
            return self.refuse({"notes": [NOTES_REQUIRED]})
        manifest = pkg.manifest if isinstance(pkg.manifest, dict) else {}
        path = Path(package)
        archive = path.read_bytes() if path.is_file() else build_zip(
            manifest, pkg.bundle, readme=pkg.readme, api_documents=pkg.api_documents)
        try:
            pushed = remote.push(client, archive=archive, manifest=manifest, readme=pkg.readme, slug=integration,
                                 organization=organization, publish=publish, notes=notes)
        except remote.Refused as exc:
            return self.refuse(exc.errors, code=exc.code, kept=exc.kept)
        except remote.RemoteError as exc:
            raise CommandError(str(exc)) from None
        self.done(slug=pushed.slug, name=pushed.name, created=pushed.created, published=pushed.published,
                  version=pushed.version, report=pushed.report)

    def done(self, *, slug: str, name: str, created: bool, published: bool, version: int | None, report):
        summary = {
            "status": "published" if published else "drafted",
            "integration": slug,
            "created": created,
            "version": version,
            **report.as_dict(),
        }
        if self.as_json:
            self.stdout.write(_dumps(summary))
        else:
            if created:
                self.stdout.write(f"created integration {slug} ({name})")
            if published:
                self.stdout.write(f"published {slug} v{version}")
            else:
                self.stdout.write(f"saved the draft of {slug}")
            self.stdout.write(report.as_text())
        self.stdout.flush()
        sys.exit(0 if report.valid else 1)

    def refuse(self, errors: dict, *, code: str | None = None, kept: str | None = None):
        if self.as_json:
            self.stdout.write(_dumps({"status": "refused", "code": code, "errors": errors}))
        else:
            # A remote push's steps are separate requests: a late refusal may leave an earlier step's work.
            self.stderr.write(f"refused: {kept or 'nothing was saved'}")
            for where, messages in errors.items():
                for message in messages:
                    self.stderr.write(f"  {where}: {message}" if where != "__all__" else f"  {message}")
        self.stdout.flush()
        sys.exit(1)


def _dumps(data) -> str:
    return json.dumps(data, ensure_ascii=False)
