"""Console lists over tables that grow without bound (the run history): counting every row
on every page would read them all — about 1 s per million runs on PostgreSQL
(docs/operations.md) — so past a few thousand rows the count is the planner's estimate."""
from __future__ import annotations

import json

from django.core.paginator import Paginator
from django.db import connections
from django.utils.functional import cached_property


class EstimatedCountPaginator(Paginator):
    """Counts exactly up to ``exact_up_to`` rows (reading no more than that); beyond, on
    PostgreSQL, uses the planner's row estimate for the list's query (never less than the
    rows it counted). Other databases count exactly."""

    exact_up_to = 10_000

    @cached_property
    def count(self) -> int:
        queryset = self.object_list.order_by()
        counted = queryset[: self.exact_up_to + 1].count()
        if counted <= self.exact_up_to:
            return counted
        connection = connections[queryset.db]
        if connection.vendor != "postgresql":
            return queryset.count()
        sql, params = queryset.query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
            plan = cursor.fetchone()[0]
        plan = json.loads(plan) if isinstance(plan, str) else plan
        return max(counted, int(plan[0]["Plan"]["Plan Rows"]))
