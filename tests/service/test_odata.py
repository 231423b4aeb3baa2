"""odata.py against the real SQLite schema: every whitelisted field is a real column, and the
SQL it builds runs; values never reach the SQL text."""

from __future__ import annotations

from pathlib import Path

import pytest

from hook_processor.service import odata
from hook_processor.service.store import Store

ENTITIES = [odata.WORKFLOWS, odata.BATCH_ORDERS, odata.PRODUCTS, odata.PRODUCTION_ORDERS]
SAMPLE = {"str": "'x'", "int": "1", "bool": "true", "date": "2024-09-02T16:17:22.942Z"}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return Store(Path(tmp_path_factory.mktemp("odata")) / "hook.sqlite3")


@pytest.mark.parametrize("entity", ENTITIES, ids=lambda e: e.name)
def test_every_field_filters_and_sorts_on_the_real_schema(
    store: Store, entity: odata.Entity
) -> None:
    db = store.connection()
    for name, field in entity.fields.items():
        params = {"$filter": f"{name} eq {SAMPLE[field.type]}", "$orderby": f"{name} desc"}
        if field.type == "str":
            params["$filter"] += f" or contains({name},'y') or endswith({name},'z')"
        query = odata.parse_query(entity, {**params, "$top": "5", "$count": "true"})
        sql, values = query.select("*", entity.table)
        db.execute(sql, values).fetchall()
        db.execute(*query.count_sql(entity.table)).fetchone()


def test_values_are_parameters_never_sql_text() -> None:
    hostile = "x'); DROP TABLE items; --"
    quoted = hostile.replace("'", "''")
    where, values = odata.compile_filter(odata.PRODUCTION_ORDERS, f"Name eq '{quoted}'")
    assert where == "(Name = ?)"
    assert values == [hostile]


def test_field_names_are_matched_case_insensitively() -> None:
    assert odata.compile_filter(odata.PRODUCTION_ORDERS, "id eq 7") == ("(Id = ?)", ["7"])
    assert odata.compile_filter(odata.BATCH_ORDERS, "PRIORITY ge 7") == ("(Priority >= ?)", [7])


def test_dates_are_normalised_to_the_stored_form() -> None:
    where, values = odata.compile_filter(
        odata.BATCH_ORDERS, "SubmissionDate ge 2024-09-02T18:17:22.9+02:00"
    )
    assert values == ["2024-09-02T16:17:22.900Z"]
    _, values = odata.compile_filter(odata.BATCH_ORDERS, "SubmissionDate lt '2024-09-03'")
    assert values == ["2024-09-03T00:00:00.000Z"]
    with pytest.raises(odata.QueryError, match="SubmissionDate is a date"):
        odata.compile_filter(odata.BATCH_ORDERS, "SubmissionDate lt 'tomorrow'")
