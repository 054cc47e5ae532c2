"""A published version's content is frozen in the database too.

``IntegrationVersion.save()`` refuses changes, but ``QuerySet.update()``, raw SQL and other
programs bypass it. This trigger refuses any UPDATE of a published row that changes its
content, number, notes, integration or state; ``available`` and ``updated_at`` may change.
It raises an integrity error (Django's ``IntegrityError``) on SQLite and PostgreSQL alike.
Deletes are not refused here: deleting an integration cascades to its versions.
"""
from django.db import migrations

TABLE = "marketplace_integrationversion"
NAME = "marketplace_version_frozen"
FROZEN = ("manifest", "files", "notes", "number", "integration_id", "checksum")
MESSAGE = "a published version cannot be changed; create a draft instead"

POSTGRES = [f"""
CREATE FUNCTION {NAME}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.state <> 'published' OR {" OR ".join(f"NEW.{c} IS DISTINCT FROM OLD.{c}" for c in FROZEN)} THEN
    RAISE EXCEPTION '{MESSAGE} (version %)', OLD.number USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NEW;
END
$$""", f"""
CREATE TRIGGER {NAME} BEFORE UPDATE ON {TABLE}
  FOR EACH ROW WHEN (OLD.state = 'published') EXECUTE FUNCTION {NAME}()
"""]
POSTGRES_DROP = [f"DROP TRIGGER IF EXISTS {NAME} ON {TABLE}", f"DROP FUNCTION IF EXISTS {NAME}()"]

SQLITE = [f"""
CREATE TRIGGER {NAME} BEFORE UPDATE ON {TABLE}
  FOR EACH ROW WHEN OLD.state = 'published'
    AND (NEW.state IS NOT 'published' OR {" OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in FROZEN)})
BEGIN
  SELECT RAISE(ABORT, '{MESSAGE}');
END
"""]
SQLITE_DROP = [f"DROP TRIGGER IF EXISTS {NAME}"]


def create(apps, schema_editor):
    _run(schema_editor, {"postgresql": POSTGRES, "sqlite": SQLITE})


def drop(apps, schema_editor):
    _run(schema_editor, {"postgresql": POSTGRES_DROP, "sqlite": SQLITE_DROP})


def _run(schema_editor, by_vendor: dict) -> None:
    # Other databases keep the model's own guard only.
    for statement in by_vendor.get(schema_editor.connection.vendor, []):
        schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [("marketplace", "0002_api_index")]

    operations = [migrations.RunPython(create, drop)]
