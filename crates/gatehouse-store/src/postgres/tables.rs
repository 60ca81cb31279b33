//! Row-for-row table access, for moving an install between stacks (`transfer`).

use futures_util::TryStreamExt as _;
use futures_util::stream::BoxStream;

use super::*;
use crate::transfer::{self, Cell, Column, Kind};

#[async_trait]
impl TableCopy for PostgresStore {
    async fn tables(&self) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'
             AND table_name NOT LIKE '\\_sqlx\\_%'
             ORDER BY table_name",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn columns(&self, table: &str) -> StoreResult<Vec<Column>> {
        let rows = sqlx::query(
            "SELECT column_name::text AS name, data_type::text AS type FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
        )
        .bind(table)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let declared: String = row.try_get("type")?;
                let kind = match declared.as_str() {
                    "bigint" | "integer" | "smallint" => Kind::Integer,
                    "boolean" => Kind::Boolean,
                    "bytea" => Kind::Bytes,
                    _ => Kind::Text,
                };
                Ok(Column {
                    name: row.try_get("name")?,
                    kind,
                })
            })
            .collect()
    }

    fn rows(&self, table: &str, columns: &[Column]) -> BoxStream<'static, StoreResult<Vec<Cell>>> {
        let (sql, columns, pool) = (transfer::select(table, columns), columns.to_vec(), self.pool.clone());
        transfer::spawn_rows(move |tx| async move {
            let mut rows = sqlx::query(&sql).fetch(&pool);
            while let Some(row) = rows.try_next().await? {
                if tx.send(cells(&row, &columns)).await.is_err() {
                    break;
                }
            }
            Ok(())
        })
    }

    async fn insert_rows(&self, table: &str, columns: &[Column], rows: &[Vec<Cell>]) -> StoreResult<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        let sql = transfer::insert(table, columns, rows.len());
        let mut query = sqlx::query(&sql);
        for row in rows {
            // PostgreSQL types every parameter: each is bound as its column's type.
            for (cell, column) in row.iter().zip(columns) {
                query = match (column.kind, cell) {
                    (Kind::Integer, Cell::Null) => query.bind(None::<i64>),
                    (Kind::Boolean, Cell::Null) => query.bind(None::<bool>),
                    (Kind::Text, Cell::Null) => query.bind(None::<String>),
                    (Kind::Bytes, Cell::Null) => query.bind(None::<Vec<u8>>),
                    (Kind::Boolean, Cell::Integer(value)) => query.bind(*value != 0),
                    (_, Cell::Integer(value)) => query.bind(*value),
                    (_, Cell::Text(text)) => query.bind(text.clone()),
                    (_, Cell::Bytes(bytes)) => query.bind(bytes.clone()),
                };
            }
        }
        Ok(query.execute(&self.pool).await?.rows_affected())
    }

    async fn after_copy(&self) -> StoreResult<()> {
        let serials = sqlx::query(
            "SELECT table_name::text AS table_name, column_name::text AS column_name FROM information_schema.columns
             WHERE table_schema = current_schema() AND column_default LIKE 'nextval(%'",
        )
        .fetch_all(&self.pool)
        .await?;
        for serial in serials {
            let (table, column): (String, String) = (serial.try_get("table_name")?, serial.try_get("column_name")?);
            // The sequence's next value: one past the highest id copied in.
            sqlx::query(&format!(
                "SELECT setval(pg_get_serial_sequence($1, $2), coalesce((SELECT max({}) FROM {}), 0) + 1, false)",
                transfer::quoted(&column),
                transfer::quoted(&table)
            ))
            .bind(transfer::quoted(&table))
            .bind(&column)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }
}

fn cells(row: &sqlx::postgres::PgRow, columns: &[Column]) -> StoreResult<Vec<Cell>> {
    columns
        .iter()
        .enumerate()
        .map(|(at, column)| {
            Ok(match column.kind {
                Kind::Integer => row.try_get::<Option<i64>, _>(at)?.map_or(Cell::Null, Cell::Integer),
                Kind::Boolean => row
                    .try_get::<Option<bool>, _>(at)?
                    .map_or(Cell::Null, |b| Cell::Integer(i64::from(b))),
                Kind::Text => row.try_get::<Option<String>, _>(at)?.map_or(Cell::Null, Cell::Text),
                Kind::Bytes => row.try_get::<Option<Vec<u8>>, _>(at)?.map_or(Cell::Null, Cell::Bytes),
            })
        })
        .collect()
}
