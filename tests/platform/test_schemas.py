"""The columns of a stored table are declared once: the DDL in ``sql/*.sql`` and the pandera
model of the same table must agree on names, DuckDB types and nullability, and a table the
warehouse creates from a frame built with ``polars_schema(model)`` gets the same types."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import duckdb
import pandera.polars as pa
import polars as pl
import pytest

import alloc_assets.schemas as schemas
from alloc_assets.schemas import MarketPrices, polars_schema
from resources.warehouse import _create_like

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"

#: polars dtype of a model column -> the DuckDB type the warehouse stores it as.
DUCKDB_TYPE = {pl.Date: "DATE", pl.Float64: "DOUBLE", pl.String: "VARCHAR", pl.Int64: "BIGINT",
               pl.Boolean: "BOOLEAN", pl.Datetime: "TIMESTAMP"}

MODELS = [m for m in vars(schemas).values()
          if isinstance(m, type) and issubclass(m, pa.DataFrameModel) and m is not pa.DataFrameModel]


def model_tables(model: type[pa.DataFrameModel]) -> list[str]:
    """The tables a model's docstring names before its first colon (``a`` / ``b``: ...)."""
    head = (model.__doc__ or "").split(":", 1)[0]
    return re.findall(r"``(\w+)``", head)


def ddl_columns() -> dict[str, dict[str, tuple[str, bool]]]:
    """{table: {column: (DuckDB type, nullable)}} of every CREATE TABLE in sql/*.sql, as DuckDB reads them."""
    con = duckdb.connect(":memory:")
    for f in sorted(SQL_DIR.glob("*.sql")):
        con.execute(f.read_text())
    rows = con.execute("SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns "
                       "ORDER BY table_name, ordinal_position").fetchall()
    out: dict[str, dict[str, tuple[str, bool]]] = {}
    for table, column, dtype, nullable in rows:
        out.setdefault(table, {})[column] = (dtype, nullable == "YES")
    return out


def model_columns(model: type[pa.DataFrameModel]) -> dict[str, tuple[str, bool]]:
    """{column: (DuckDB type, nullable)} of the model's required columns."""
    return {name: (DUCKDB_TYPE[polars_schema(model)[name]], col.nullable)
            for name, col in model.to_schema().columns.items() if col.required}


def test_every_model_names_its_tables():
    assert MODELS, "no pandera model found in alloc_assets.schemas"
    for model in MODELS:
        assert model_tables(model), f"{model.__name__}: the docstring should start with ``table``: ..."


def test_ddl_agrees_with_models():
    ddl = ddl_columns()
    covered = []
    for model in MODELS:
        for table in model_tables(model):
            if table in ddl:
                assert ddl[table] == model_columns(model), f"sql/ DDL of {table} != {model.__name__}"
                covered.append(table)
    assert {"market_prices", "market_indicators"} <= set(covered)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_tables_created_from_frames_get_the_model_types(model):
    con = duckdb.connect(":memory:")
    _create_like(con, "t", pl.DataFrame(schema=polars_schema(model)))
    created = {c: t for c, t in con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 't'").fetchall()}
    assert created == {c: t for c, (t, _) in model_columns(model).items()}


def test_polars_schema_builds_a_frame_the_model_accepts():
    assert polars_schema(MarketPrices) == {"date": pl.Date, "symbol": pl.String, "close": pl.Float64}
    frame = pl.DataFrame({"date": [dt.date(2024, 1, 2)], "symbol": ["AAA"], "close": [10.0]},
                         schema=polars_schema(MarketPrices))
    MarketPrices.validate(frame)
