"""The PostgreSQL pickup (runtime.postgres.claim_queued and record_outcome):
claim and load in one statement, the ORM's other branches for anything it does not claim."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from marketplace.choices import RunStatus, Trigger
from marketplace.models import HandlerRun, Instance
from runtime.execution import clear_program_cache, instance_info
from runtime.postgres import claim_queued, load_run
from runtime.worker import process_run

from .. import factories
from ..conftest import requires_postgres

pytestmark = [pytest.mark.django_db, requires_postgres]

LUA = """
function handle(ctx, input)
  return { n = input.n, key = ctx.config.apiKey, site = ctx.config.site, name = ctx.instance.name }
end
"""


@pytest.fixture
def instance(db):
    version = factories.make_published(
        manifest={
            "name": "plain", "resources": {}, "permissions": ["log"],
            "configSchema": {"type": "object", "properties": {"site": {"type": "string"},
                                                              "apiKey": {"type": "string", "format": "password"}}},
            "handlers": {"handle": {"type": "event", "event": "x", "file": "main.lua", "function": "handle"}},
        },
        files={"main.lua": LUA},
    )
    return Instance.objects.create(organization=factories.make_org(), version=version, name="pg",
                                   config={"site": "HQ"}, secret_config={"apiKey": "s3cret"})


def queue(instance, n=1) -> HandlerRun:
    return HandlerRun.objects.create(instance=instance, handler="handle", trigger=Trigger.EVENT, input={"n": n})


def test_a_queued_run_is_claimed_and_loaded_like_the_orm_loads_it(instance):
    run = queue(instance)
    claimed = claim_queued(run.pk)
    assert claimed is not None
    orm = load_run(run.pk)
    assert (claimed.status, claimed.starts, claimed.started_at) == (RunStatus.RUNNING, 1, orm.started_at)
    for field in HandlerRun._meta.concrete_fields:
        assert getattr(claimed, field.attname) == getattr(orm, field.attname), field.name
    for field in Instance._meta.concrete_fields:
        assert getattr(claimed.instance, field.attname) == getattr(orm.instance, field.attname), field.name
    version = claimed.instance.version
    assert (version.pk, version.number, version.checksum, version.state, version.integration_id) == (
        orm.instance.version.pk, orm.instance.version.number, orm.instance.version.checksum,
        orm.instance.version.state, orm.instance.version.integration_id,
    )
    assert claimed.instance.runtime_config() == {"site": "HQ", "apiKey": "s3cret"}
    assert instance_info(claimed.instance) == instance_info(orm.instance)
    assert claim_queued(run.pk) is None  # running now: not claimed twice


def test_a_run_is_executed_and_recorded_in_two_statements_once_its_version_is_cached(instance):
    clear_program_cache()
    assert process_run(queue(instance, 0).pk) == "executed"
    run = queue(instance, 7)
    with CaptureQueriesContext(connection) as queries:
        assert process_run(run.pk) == "executed"
    assert len(queries) == 2  # claim + load, outcome
    run.refresh_from_db()
    assert (run.status, run.starts, run.result) == (
        RunStatus.SUCCEEDED, 1, {"n": 7, "key": "s3cret", "site": "HQ", "name": "pg"}
    )
    assert (run.error_code, run.error_message, run.error_file, run.error_line, run.logs) == ("", "", "", None, [])
    assert run.started_at and run.finished_at >= run.started_at and run.duration_ms is not None


def test_an_instance_not_run_lately_has_its_last_run_at_written_with_the_outcome(instance):
    """Timers mostly run instances idle for longer than LAST_RUN_AT_GRANULARITY: the
    instance's last_run_at goes with the outcome, in the same statement."""
    clear_program_cache()
    assert process_run(queue(instance, 0).pk) == "executed"
    other = Instance.objects.create(organization=instance.organization, version=instance.version, name="idle")
    run = HandlerRun.objects.create(instance=other, handler="handle", trigger=Trigger.EVENT, input={"n": 1})
    with CaptureQueriesContext(connection) as queries:
        assert process_run(run.pk) == "executed"
    assert len(queries) == 2  # claim + load, outcome + last_run_at
    run.refresh_from_db()
    other.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and other.last_run_at == run.finished_at
    # Never backwards: a run finishing "earlier" than the stored time leaves it alone.
    later = run.finished_at + timedelta(minutes=5)
    Instance.objects.filter(pk=other.pk).update(last_run_at=later)
    assert process_run(HandlerRun.objects.create(instance=other, handler="handle", trigger=Trigger.EVENT,
                                                 input={"n": 2}).pk) == "executed"
    other.refresh_from_db()
    assert other.last_run_at == later


def test_a_failure_is_recorded_with_its_location(instance):
    broken = queue(instance)
    version = instance.version
    version.files = {"main.lua": "function handle(ctx, input)\n  local x = nil\n  return x.field\nend\n"}
    factories.rewrite_published(version, files=version.files, checksum="y" * 64)
    clear_program_cache()
    assert process_run(broken.pk) == "executed"
    broken.refresh_from_db()
    assert (broken.status, broken.error_code, broken.result) == (RunStatus.FAILED, "lua_error", None)
    assert broken.error_line == 3 and broken.error_file == "main.lua" and broken.finished_at


def test_a_run_on_a_disabled_instance_is_refused_and_recorded(instance):
    run = queue(instance)
    Instance.objects.filter(pk=instance.pk).update(enabled=False)
    assert claim_queued(run.pk) is None
    assert process_run(run.pk) == "refused"
    run.refresh_from_db()
    assert (run.status, run.error_code, run.starts) == (RunStatus.FAILED, "instance_disabled", 0)


def test_a_finished_run_redelivered_is_untouched(instance):
    run = queue(instance)
    assert process_run(run.pk) == "executed"
    run.refresh_from_db()
    assert claim_queued(run.pk) is None
    assert process_run(run.pk, redelivered=True) == "finished"
    again = HandlerRun.objects.get(pk=run.pk)
    assert (again.status, again.starts, again.started_at, again.finished_at, again.result) == (
        run.status, 1, run.started_at, run.finished_at, run.result
    )


def test_a_run_whose_worker_died_goes_through_the_orm_branch(instance):
    run = queue(instance)
    assert claim_queued(run.pk) is not None  # picked up; its worker dies
    assert process_run(run.pk) == "duplicate"  # not redelivered: another worker may run it
    assert process_run(run.pk, redelivered=True) == "executed"
    run.refresh_from_db()
    assert (run.status, run.starts) == (RunStatus.SUCCEEDED, 2)


def test_a_run_whose_row_is_gone_is_dropped():
    assert process_run(987654) == "gone"
