//! Row-for-row table access, for moving an install between stacks (`transfer`).

use futures_util::TryStreamExt as _;
use futures_util::stream::BoxStream;
use sqlx::ValueRef as _;

use super::*;
use crate::transfer::{self, Cell, Column, Kind};

#[async_trait]
impl TableCopy for SqliteStore {
    async fn tables(&self) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table'
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_sqlx\\_%' ESCAPE '\\'
             ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn columns(&self, table: &str) -> StoreResult<Vec<Column>> {
        let rows = sqlx::query("SELECT name, type FROM pragma_table_info($1) ORDER BY cid")
            .bind(table)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let declared: String = row.try_get("type")?;
                let declared = declared.to_ascii_uppercase();
                // SQLite's affinity rules: BOOLEAN and BIGINT are stored as integers.
                let kind = if declared.contains("INT") {
                    Kind::Integer
                } else if declared.contains("BOOL") {
                    Kind::Boolean
                } else if declared.contains("BLOB") {
                    Kind::Bytes
                } else {
                    Kind::Text
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
        for cell in rows.iter().flatten() {
            query = match cell {
                Cell::Null => query.bind(None::<i64>),
                Cell::Integer(value) => query.bind(*value),
                Cell::Text(text) => query.bind(text.clone()),
                Cell::Bytes(bytes) => query.bind(bytes.clone()),
            };
        }
        Ok(query.execute(&self.writer).await?.rows_affected())
    }
}

fn cells(row: &sqlx::sqlite::SqliteRow, columns: &[Column]) -> StoreResult<Vec<Cell>> {
    columns
        .iter()
        .enumerate()
        .map(|(at, column)| {
            if row.try_get_raw(at)?.is_null() {
                return Ok(Cell::Null);
            }
            Ok(match column.kind {
                Kind::Integer | Kind::Boolean => Cell::Integer(row.try_get(at)?),
                Kind::Text => Cell::Text(row.try_get(at)?),
                Kind::Bytes => Cell::Bytes(row.try_get(at)?),
            })
        })
        .collect()
}
