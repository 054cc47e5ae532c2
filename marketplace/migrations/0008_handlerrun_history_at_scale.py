"""Run history at internet scale (docs/operations.md, bench/bench_history.py).

- Two partial indexes: a run's attempts (most runs have none) and the unfinished runs
  (the console's queued/running filters, housekeeping), where a plan showed a whole-table scan.
- The foreign keys' own indexes go: the history index serves ``instance_id`` and the
  partial one ``first_run_id``; each was an entry per run on every insert.
- PostgreSQL only: the runs table is vacuumed and analysed after 1% of its rows changed,
  not the default 20% (at 30 days of 500 runs/s that would be 260 million dead rows before
  autovacuum makes their space reusable).

The indexes are created in the migration's transaction, which blocks writes to the table
while they build: on a table already holding millions of runs create them first with
CREATE INDEX CONCURRENTLY (docs/operations.md).
"""
import django.db.models.deletion
from django.db import migrations, models

TABLE = "marketplace_handlerrun"
AUTOVACUUM = ("autovacuum_vacuum_scale_factor", "autovacuum_vacuum_insert_scale_factor",
              "autovacuum_analyze_scale_factor")


def tune_autovacuum(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        settings = ", ".join(f"{name} = 0.01" for name in AUTOVACUUM)
        schema_editor.execute(f"ALTER TABLE {TABLE} SET ({settings})")


def reset_autovacuum(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE {TABLE} RESET ({', '.join(AUTOVACUUM)})")


class Migration(migrations.Migration):

    dependencies = [
        ('marketplace', '0007_storage_quotas'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='handlerrun',
            index=models.Index(condition=models.Q(('first_run__isnull', False)), fields=['first_run'], name='handlerrun_attempts_idx'),
        ),
        migrations.AddIndex(
            model_name='handlerrun',
            index=models.Index(condition=models.Q(('status__in', ['queued', 'running'])), fields=['status', 'created_at'], name='handlerrun_unfinished_idx'),
        ),
        migrations.AlterField(
            model_name='handlerrun',
            name='first_run',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='attempts', to='marketplace.handlerrun'),
        ),
        migrations.AlterField(
            model_name='handlerrun',
            name='instance',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='runs', to='marketplace.instance'),
        ),
        migrations.RunPython(tune_autovacuum, reset_autovacuum),
    ]
