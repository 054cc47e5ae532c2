"""The demo catalog that `make run` loads: organizations, users, categories, integrations
with icons, versions (some unavailable), a draft, attachments, devices and instances.

Loading goes through the same services as every other interface and is idempotent: each
object is looked up by its natural key first, so running it twice changes nothing.
"""
from __future__ import annotations

import copy
import io
import sqlite3
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from PIL import Image, ImageDraw, ImageFont

from ..choices import ResourceKind, Role, Visibility
from ..models import Category, Device, Instance, Integration, Membership, Organization
from ..services import catalog, drafts, installs, media, publishing
from ..validators import sqlite_device_folder
from .handlers import SHAPES

DEMO_ERP_FILE = "erp.sqlite3"

CATEGORIES = [
    ("ERP", "erp", "Order, invoice and master-data flows with ERP systems."),
    ("Printing & Labels", "printing", "Printers, label queues and print servers."),
    ("Inventory", "inventory", "Stock levels, warehouses and scanners."),
    ("Messaging", "messaging", "Chat, SMS and e-mail notifications."),
    ("Monitoring", "monitoring", "Heartbeats, sensors and health checks."),
    ("Databases", "databases", "Reports and checks on SQL databases."),
    ("CRM", "crm", "Contacts, leads and accounts."),
]

ORGANIZATIONS = [("Acme Devices", "acme"), ("Globex Systems", "globex"), ("Initech", "initech")]

# (name, owner slug, category slug, shape, colour, summary, [version notes], available flags, draft?, visibility)
INTEGRATIONS = [
    ("Printer Sync", "acme", "printing", "http_poll", (33, 99, 180),
     "Keeps printer status and orders in step.",
     ["First release.", "Caches the status answer for ten minutes.", "Sends the API key as a header."],
     [False, True, True], True, Visibility.PUBLIC),
    ("Label Queue", "acme", "printing", "http_poll", (200, 90, 40),
     "Watches a label printer's queue and reports jams.", ["Initial version."], [True], False, Visibility.PUBLIC),
    ("ERP Order Sync", "acme", "erp", "sql_sync", (40, 140, 90),
     "Copies open orders from the ERP database every minute.",
     ["Initial version.", "Batches of 50 by default; retries three times."], [True, True], False, Visibility.PUBLIC),
    ("Invoice Export", "globex", "erp", "sql_sync", (120, 70, 160),
     "Exports posted invoices for the accounting team.", ["Initial version."], [True], False, Visibility.PUBLIC),
    ("Stock Level Monitor", "globex", "inventory", "sql_sync", (20, 150, 160),
     "Flags items that fall under their reorder point.",
     ["Initial version.", "Skips closed orders."], [True, False], False, Visibility.PUBLIC),
    ("Warehouse Scanner Bridge", "initech", "inventory", "http_poll", (90, 90, 90),
     "Collects scans from handheld scanners.", ["Initial version."], [True], False, Visibility.PUBLIC),
    ("Chat Alerts", "acme", "messaging", "webhook_notify", (210, 50, 90),
     "Posts alert events to a chat channel.", ["Initial version.", "Retries twice on failure."], [True, True],
     False, Visibility.PUBLIC),
    ("SMS Notifications", "initech", "messaging", "webhook_notify", (230, 160, 30),
     "Texts on-call staff when an alert is raised.", ["Initial version."], [True], False, Visibility.PUBLIC),
    ("Uptime Heartbeat", "acme", "monitoring", "heartbeat", (60, 170, 60),
     "Records a heartbeat every minute per site.", ["Initial version."], [True], False, Visibility.PUBLIC),
    ("Temperature Logger", "globex", "monitoring", "http_poll", (220, 80, 60),
     "Reads temperature sensors over HTTP.", ["Initial version."], [True], True, Visibility.PUBLIC),
    ("Nightly DB Report", "initech", "databases", "nightly_report", (50, 60, 140),
     "Counts rows in every table at 02:00 Berlin time.", ["Initial version."], [True], False, Visibility.PUBLIC),
    ("Database Health Check", "globex", "databases", "heartbeat", (100, 130, 30),
     "A light heartbeat for database hosts.", ["Initial version."], [True], False, Visibility.PUBLIC),
    ("CRM Contact Sync", "acme", "crm", "sql_sync", (160, 40, 120),
     "Mirrors CRM contacts into per-install storage.", ["Initial version."], [True], False, Visibility.PRIVATE),
]

USERS = [
    # username, password, staff, superuser, [(org slug, role)]
    ("publisher", "junction-demo", True, False, [("acme", Role.PUBLISHER)]),
    ("globex", "junction-demo", True, False, [("globex", Role.OWNER)]),
    ("member", "junction-demo", False, False, [("acme", Role.MEMBER)]),
]


def make_icon(name: str, colour: tuple[int, int, int], size: int = 512) -> bytes:
    """A square PNG with the integration's initials on its colour."""
    image = Image.new("RGB", (size, size), colour)
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((24, 24, size - 24, size - 24), radius=72, outline=(255, 255, 255), width=12)
    initials = "".join(word[0] for word in name.split()[:2]).upper()
    font = ImageFont.load_default(size=size // 3)
    draw.text((size / 2, size / 2), initials, fill=(255, 255, 255), font=font, anchor="mm")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def demo_erp_database(org: Organization) -> Path:
    """A small SQLite 'ERP' the demo SQL device points at, in its organization's device
    folder (SQLite devices may not open files anywhere else)."""
    path = sqlite_device_folder(org.pk) / DEMO_ERP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, state TEXT NOT NULL)")
        db.execute("CREATE TABLE IF NOT EXISTS customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        if db.execute("SELECT COUNT(*) FROM orders").fetchone()[0] == 0:
            db.executemany("INSERT INTO orders (id, state) VALUES (?, ?)",
                           [(i, ("open", "shipped", "closed")[i % 3]) for i in range(1, 31)])
            db.executemany("INSERT INTO customers (id, name) VALUES (?, ?)",
                           [(1, "Ada Ltd"), (2, "Babbage & Co"), (3, "Curie GmbH")])
    return path


class DemoLoader:
    def __init__(self, stdout=None):
        self.stdout = stdout
        self.created: list[str] = []

    def note(self, text: str) -> None:
        self.created.append(text)

    def load(self) -> list[str]:
        with transaction.atomic():
            orgs = {slug: self.organization(name, slug) for name, slug in ORGANIZATIONS}
            for username, password, staff, superuser, memberships in USERS:
                self.user(username, password, staff, superuser, [(orgs[o], r) for o, r in memberships])
            categories = {slug: self.category(i, name, slug, text) for i, (name, slug, text) in enumerate(CATEGORIES)}
            integrations = {}
            for spec in INTEGRATIONS:
                integrations[spec[0]] = self.integration(spec, orgs, categories)
            devices = self.devices(orgs["acme"])
        # Outside the transaction: installing runs install handlers, which never run inside
        # one (each install commits its own steps; a rerun skips what exists).
        self.instances(orgs["acme"], integrations, devices)
        return self.created

    def organization(self, name, slug):
        org, created = Organization.objects.get_or_create(slug=slug, defaults={"name": name})
        if created:
            self.note(f"organization {name}")
        return org

    def user(self, username, password, staff, superuser, memberships):
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is None:
            user = User.objects.create_user(username=username, password=password, is_staff=staff,
                                            is_superuser=superuser, email=f"{username}@example.com")
            self.note(f"user {username}")
        for org, role in memberships:
            Membership.objects.get_or_create(user=user, organization=org, defaults={"role": role})

    def category(self, position, name, slug, description):
        category, created = Category.objects.get_or_create(
            slug=slug, defaults={"name": name, "description": description, "ordering": position * 10}
        )
        if created:
            self.note(f"category {name}")
        return category

    def integration(self, spec, orgs, categories):
        name, owner, category, shape, colour, summary, notes, available, draft, visibility = spec
        slug = catalog.unique_slug(name)
        existing = Integration.objects.filter(owner=orgs[owner], name=name).first()
        if existing:
            return existing
        integration = catalog.create_integration(
            organization=orgs[owner], name=name, summary=summary, category=categories[category],
            visibility=visibility, slug=slug,
            description="## Getting started\n\nInstall it, fill in the **configuration** and bind its resources "
                        "to your own devices. The attached setup guide has the details.",
        )
        media.set_icon(integration=integration,
                       upload=SimpleUploadedFile("icon.png", make_icon(name, colour), content_type="image/png"))
        media.add_attachment(
            integration=integration, title=f"{name} — setup guide",
            upload=SimpleUploadedFile(f"{slug}-setup.pdf", demo_pdf(name), content_type="application/pdf"),
        )
        bundle = SHAPES[shape]
        for number, (note, is_available) in enumerate(zip(notes, available), start=1):
            version = drafts.get_or_create_draft(integration=integration)
            manifest = copy.deepcopy(bundle["manifest"])
            manifest.update(name=slug, title=name, description=f"{summary} (version {number})")
            drafts.update_draft(draft=version, manifest=manifest, files=bundle["files"])
            version = publishing.publish_version(draft=version, notes=note)
            if not is_available:
                publishing.set_availability(version=version, available=False)
        if draft:
            drafts.create_draft(integration=integration)
        self.note(f"integration {name} ({len(notes)} versions{', draft' if draft else ''})")
        return integration

    def devices(self, org):
        demo_erp_database(org)
        base = settings.JUNCTION_DEMO_BASE_URL
        specs = [
            ("Demo ERP database", ResourceKind.SQL, {"dsn": f"sqlite:///{DEMO_ERP_FILE}"}),
            ("Front-desk printer", ResourceKind.HTTP, {"base_url": f"{base}/demo/printer/"}),
            ("Team chat", ResourceKind.HTTP, {"base_url": f"{base}/demo/chat/",
                                              "credentials": {"token": "demo-chat-token"}}),
        ]
        devices = {}
        for name, kind, fields in specs:
            device = Device.objects.filter(organization=org, name=name).first()
            if device is None:
                device = Device(organization=org, name=name, kind=kind, **fields)
                device.full_clean()
                device.save()
                self.note(f"device {name}")
            elif kind == ResourceKind.SQL and device.dsn != fields["dsn"]:
                # Demo data of an earlier release pointed at var/demo/, outside the device folder.
                device.dsn = fields["dsn"]
                device.full_clean()
                device.save(update_fields=["dsn"])
                self.note(f"device {name} (moved to the device folder)")
            devices[name] = device
        return devices

    def instances(self, org, integrations, devices):
        specs = [
            ("Heartbeat HQ", "Uptime Heartbeat", {"site": "HQ"}, {}),
            ("ERP orders", "ERP Order Sync", {"batch": 20}, {"erp": devices["Demo ERP database"]}),
            ("Front-desk printer", "Printer Sync", {"site": "Front desk", "apiKey": "demo-secret-key"},
             {"device": devices["Front-desk printer"]}),
        ]
        for name, integration_name, config, bindings in specs:
            if Instance.objects.filter(organization=org, name=name).exists():
                continue
            version = integrations[integration_name].latest_available()
            installs.install_version(version=version, organization=org, name=name, config=config, bindings=bindings)
            self.note(f"instance {name}")


def demo_pdf(title: str) -> bytes:
    """A one-page PDF drawn with Pillow, so attachments are real documents."""
    page = Image.new("RGB", (850, 1100), "white")
    draw = ImageDraw.Draw(page)
    draw.text((80, 100), f"{title}\nSetup guide", fill="black", font=ImageFont.load_default(size=36))
    draw.text((80, 260), "1. Install the integration.\n2. Fill in its configuration.\n3. Bind each resource "
              "to a device.", fill="black", font=ImageFont.load_default(size=22))
    out = io.BytesIO()
    page.save(out, format="PDF")
    return out.getvalue()
