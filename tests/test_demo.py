"""The demo catalog `make run` loads: complete, and loading it twice changes nothing."""
from django.apps import apps
from django.core.management import call_command

from marketplace.choices import RunStatus, Trigger
from marketplace.demo.catalog import DemoLoader
from marketplace.models import Attachment, Category, Device, Instance, Integration, IntegrationVersion
from marketplace.validators import sqlite_device_folder
from runtime.worker import run_now


def row_counts() -> dict[str, int]:
    return {model._meta.label: model.objects.count() for model in apps.get_app_config("marketplace").get_models()}


def test_demo_catalog_is_realistic(db, settings, tmp_path):
    settings.DATA_DIR = tmp_path
    call_command("load_demo", verbosity=0)

    assert Category.objects.count() >= 6
    assert Integration.objects.count() >= 12
    assert not Integration.objects.filter(icon="").exists()
    assert IntegrationVersion.objects.published().filter(available=False).exists()
    assert IntegrationVersion.objects.drafts().exists()
    assert IntegrationVersion.objects.published().exclude(notes="").count() == IntegrationVersion.objects.published().count()
    assert Attachment.objects.exists()
    assert Instance.objects.count() >= 3
    assert all(instance.bindings.count() == len(instance.version.resources) for instance in Instance.objects.all())


def test_loading_the_demo_twice_changes_nothing(db, settings, tmp_path, media_root):
    settings.DATA_DIR = tmp_path
    call_command("load_demo", verbosity=0)
    before = row_counts()
    files_before = sorted(p for p in media_root.rglob("*") if p.is_file())

    call_command("load_demo", verbosity=0)

    assert row_counts() == before
    assert sorted(p for p in media_root.rglob("*") if p.is_file()) == files_before


def test_the_demo_erp_lives_in_its_organizations_device_folder(db, settings, tmp_path):
    settings.DATA_DIR = tmp_path
    call_command("load_demo", verbosity=0)
    instance = Instance.objects.get(name="ERP orders")
    # An earlier release put the demo ERP under var/demo/, outside any device folder:
    # loading the demo again moves its device.
    Device.objects.filter(name="Demo ERP database").update(dsn=f"sqlite:///{tmp_path}/demo/erp.sqlite3")
    DemoLoader().devices(instance.organization)

    run = run_now(instance=instance, handler="sync", input={}, trigger=Trigger.TIMER)

    assert run.status == RunStatus.SUCCEEDED, (run.error_code, run.error_message)
    assert run.result == {"synced": 20}
    assert Device.objects.get(name="Demo ERP database").dsn == "sqlite:///erp.sqlite3"
    assert (sqlite_device_folder(instance.organization_id) / "erp.sqlite3").is_file()
