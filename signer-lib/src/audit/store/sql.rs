//! The SQL both stores share. The statements are the same text for SQLite and PostgreSQL (`$n`
//! placeholders, 64-bit integers, blobs); only the driver types differ, so the implementation is
//! written once as a macro and instantiated per driver.

use std::sync::{Arc, LazyLock};

use super::super::merkle::Hash;
use super::{EPOCH_BITS, QueryFilter, text_key};
use crate::Error;

/// The most rows in one multi-row INSERT. A batch becomes full statements of this size and one
/// statement for the rest; there is a prepared statement for every row count up to this, so a
/// batch costs two or three round trips to the database whatever its size.
pub(super) const MAX_ROWS_PER_INSERT: usize = 256;

/// Prepared statements kept per connection: every INSERT size for both tables, every node
/// lookup size, plus the rest.
pub(super) const STATEMENT_CACHE: usize = 2 * MAX_ROWS_PER_INSERT + MAX_NODE_IDS_PER_QUERY + 64;

/// Node ids looked up per query (two placeholders each).
pub(super) const MAX_NODE_IDS_PER_QUERY: usize = 128;

pub(super) const RECORD_COLUMNS: &str = "idx, time_ms, actor, event, object, record, leaf_hash";

/// The columns an append writes: the record's, then its lookup keys.
const INSERT_COLUMNS: &str = "idx, time_ms, actor, event, object, record, leaf_hash, leaf_key, actor_key, object_key";

/// The rows of a full verification: each record joined with its level-0 tree node, so that a
/// record costs one row, not two. A row is three values: the record, its leaf hash, and one text
/// that packs the other columns (see [`unpack_leaf_row`]); the drivers' cost is per value (each
/// is copied out of the database and handed to another thread), and eleven values per record
/// cost more than the checks themselves.
pub(super) const SCAN_LEAVES: &str = "SELECT r.record, r.leaf_hash, \
     r.idx || ',' || r.time_ms || ',' || r.leaf_key || ',' || r.actor_key || ',' \
     || COALESCE(CAST(r.object_key AS TEXT), '') || ',' \
     || CASE WHEN n.hash IS NULL THEN '' WHEN n.hash = r.leaf_hash THEN '1' ELSE '0' END || ',' \
     || octet_length(r.event) || ':' || r.event || octet_length(r.actor) || ':' || r.actor \
     || COALESCE(octet_length(r.object) || ':' || r.object, '') \
     FROM audit_records r LEFT JOIN audit_nodes n ON n.level = 0 AND n.idx = r.idx \
     WHERE r.idx >= $1 AND r.idx < $2 ORDER BY r.idx";

/// Reads the packed column of [`SCAN_LEAVES`]:
/// `idx,time,leaf_key,actor_key,object_key,node,` then `len:event`, `len:actor` and, unless the
/// object is NULL, `len:object`, with lengths in bytes. `object_key` is empty for NULL; `node` is
/// `1` when the level-0 node equals the leaf hash, `0` when it differs, empty when it is missing.
pub(super) fn unpack_leaf_row<'a>(
    packed: &'a str,
    der: &'a [u8],
    leaf_hash: &'a [u8],
) -> Result<super::LeafRow<'a>, Error> {
    fn int(field: Option<&str>) -> Option<i64> {
        field?.parse().ok()
    }
    fn optional(field: Option<&str>) -> Option<Option<&str>> {
        field.map(|f| (!f.is_empty()).then_some(f))
    }
    fn take(s: &str) -> Option<(&str, &str)> {
        let (len, rest) = s.split_once(':')?;
        let len: usize = len.parse().ok()?;
        Some((rest.get(..len)?, rest.get(len..)?))
    }
    let mut fields = packed.splitn(7, ',');
    let index = int(fields.next()).and_then(|i| u64::try_from(i).ok());
    let unreadable = || Error::Tampered {
        index: index.unwrap_or(0),
        what: format!("the query columns of the record cannot be read ({packed:?})"),
    };
    let index = index.ok_or_else(unreadable)?;
    let time = int(fields.next()).ok_or_else(unreadable)?;
    let leaf_key = int(fields.next()).ok_or_else(unreadable)?;
    let actor_key = int(fields.next()).ok_or_else(unreadable)?;
    let object_key = match optional(fields.next()).ok_or_else(unreadable)? {
        None => None,
        Some(k) => Some(k.parse().map_err(|_| unreadable())?),
    };
    let node_matches = match optional(fields.next()).ok_or_else(unreadable)? {
        None => None,
        Some("1") => Some(true),
        Some(_) => Some(false),
    };
    let rest = fields.next().ok_or_else(unreadable)?;
    let (event, rest) = take(rest).ok_or_else(unreadable)?;
    let (actor, rest) = take(rest).ok_or_else(unreadable)?;
    let object = if rest.is_empty() {
        None
    } else {
        let (object, rest) = take(rest).ok_or_else(unreadable)?;
        if !rest.is_empty() {
            return Err(unreadable());
        }
        Some(object)
    };
    Ok(super::LeafRow {
        index,
        time,
        actor,
        event,
        object,
        der,
        leaf_hash,
        leaf_key,
        actor_key,
        object_key,
        node_matches,
    })
}

/// Rows read per round trip while an upgrade fills the lookup keys.
pub(super) const UPGRADE_READ: i64 = 4096;

/// The marker between the two halves of an upgrade script.
pub(super) const UPGRADE_FILL_MARKER: &str = "-- @fill";

/// How a dialect writes the placeholders of the big INSERTs.
#[derive(Clone, Copy, Debug)]
pub(super) enum Placeholders {
    /// `$1, $2, …` (PostgreSQL).
    Numbered,
    /// `?, ?, …` (SQLite: the driver looks up a numbered parameter's name with
    /// `sqlite3_bind_parameter_name`, which scans the statement's parameter list, so binding
    /// the 1,792 parameters of a 256-row INSERT by number is quadratic; anonymous ones are not).
    Anonymous,
}

/// `INSERT INTO table (columns) VALUES ($1, …), (…)` for `rows` rows of `width` columns.
fn insert_sql(table: &str, columns: &str, width: usize, rows: usize, style: Placeholders) -> Arc<str> {
    let mut sql = format!("INSERT INTO {table} ({columns}) VALUES ");
    push_values(&mut sql, width, rows, style);
    sql.into()
}

/// The statement that writes the lookup keys of `rows` records during an upgrade; its
/// parameters are `(idx, leaf_key, actor_key, object_key)` per row.
pub(super) fn fill_keys_sql(rows: usize, style: Placeholders) -> String {
    let mut sql = String::from("WITH v (i, l, a, o) AS (VALUES ");
    push_values(&mut sql, 4, rows, style);
    sql.push_str(
        ") UPDATE audit_records SET leaf_key = v.l, actor_key = v.a, object_key = v.o \
         FROM v WHERE audit_records.idx = v.i",
    );
    sql
}

/// `($1, …), (…)`: `rows` groups of `width` placeholders.
fn push_values(sql: &mut String, width: usize, rows: usize, style: Placeholders) {
    let mut n = 0;
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for col in 0..width {
            if col > 0 {
                sql.push_str(", ");
            }
            n += 1;
            match style {
                Placeholders::Numbered => {
                    sql.push('$');
                    sql.push_str(&n.to_string());
                }
                Placeholders::Anonymous => sql.push('?'),
            }
        }
        sql.push(')');
    }
}

/// The multi-row INSERT statements of one dialect: entry `n - 1` inserts `n` rows.
#[derive(Debug)]
pub(super) struct Inserts {
    pub(super) records: Vec<Arc<str>>,
    pub(super) nodes: Vec<Arc<str>>,
}

impl Inserts {
    fn new(style: Placeholders) -> Self {
        let sizes = 1..=MAX_ROWS_PER_INSERT;
        Self {
            records: sizes.clone().map(|n| insert_sql("audit_records", INSERT_COLUMNS, 10, n, style)).collect(),
            nodes: sizes.map(|n| insert_sql("audit_nodes", "level, idx, hash", 3, n, style)).collect(),
        }
    }
}

/// The PostgreSQL INSERTs.
pub(super) static POSTGRES_INSERTS: LazyLock<Inserts> = LazyLock::new(|| Inserts::new(Placeholders::Numbered));

/// Splits `len` items into statements: (statement number, start, end).
pub(super) fn chunks(len: usize) -> Vec<(usize, usize, usize)> {
    (0..len)
        .step_by(MAX_ROWS_PER_INSERT)
        .map(|start| {
            let end = (start + MAX_ROWS_PER_INSERT).min(len);
            (end - start - 1, start, end)
        })
        .collect()
}

/// The node lookup for `count` ids: `(level = $1 AND idx = $2) OR …`.
pub(super) fn nodes_sql(count: usize) -> String {
    let mut sql = String::from("SELECT level, idx, hash FROM audit_nodes WHERE ");
    for i in 0..count {
        if i > 0 {
            sql.push_str(" OR ");
        }
        sql.push_str(&format!("(level = ${} AND idx = ${})", 2 * i + 1, 2 * i + 2));
    }
    sql
}

/// A value bound into a query built at run time.
pub(super) enum Param {
    Int(i64),
    Text(String),
}

/// `(idx >> 16) IN (…)` for the epochs (see [`EPOCH_BITS`]) of the records `from..=last`: the
/// condition that lets a lookup on the object or leaf-hash index probe each epoch. The epochs
/// are integers computed here, written into the SQL as literals.
pub(super) fn epochs_sql(from: u64, last: u64) -> String {
    let mut sql = format!("(idx >> {EPOCH_BITS}) IN (");
    for (i, epoch) in ((from >> EPOCH_BITS)..=(last >> EPOCH_BITS)).enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&epoch.to_string());
    }
    sql.push(')');
    sql
}

/// The SQL and parameters of a [`QueryFilter`] on a log whose last record is `last`. Only
/// placeholders carry the values.
pub(super) fn query_sql(filter: &QueryFilter, last: u64) -> Result<(String, Vec<Param>), Error> {
    let mut sql = format!("SELECT {RECORD_COLUMNS} FROM audit_records WHERE 1 = 1");
    let mut params = Vec::new();
    let mut add = |cond: &str, p: Param| {
        params.push(p);
        sql.push_str(&format!(" AND {cond} ${}", params.len()));
    };
    if let Some(t) = filter.from_time {
        add("time_ms >=", Param::Int(t));
    }
    if let Some(t) = filter.to_time {
        add("time_ms <", Param::Int(t));
    }
    // The key finds the rows through its index; the value itself decides.
    if let Some(a) = &filter.actor {
        let key = a.key();
        add("actor_key =", Param::Int(text_key(&key)));
        add("actor =", Param::Text(key));
    }
    if let Some(e) = filter.event {
        add("event =", Param::Text(e.name().to_owned()));
    }
    if let Some(o) = &filter.object {
        let epochs = epochs_sql(filter.from_index.unwrap_or(0), last);
        add(&format!("{epochs} AND object_key ="), Param::Int(text_key(o)));
        add("object =", Param::Text(o.clone()));
    }
    if let Some(i) = filter.from_index {
        add("idx >=", Param::Int(to_db(i)?));
    }
    let limit = if filter.limit == 0 { QueryFilter::DEFAULT_LIMIT } else { filter.limit };
    add("1 = 1 ORDER BY idx LIMIT", Param::Int(i64::from(limit)));
    // The last condition's placeholder is the LIMIT: "… AND 1 = 1 ORDER BY idx LIMIT $n".
    Ok((sql, params))
}

/// A tree position or size as the database's signed 64-bit integer.
pub(super) fn to_db(n: u64) -> Result<i64, Error> {
    i64::try_from(n).map_err(|_| Error::Audit(format!("index {n} is beyond what the store can hold")))
}

/// A stored integer as a tree position; negative values mean the table was edited.
pub(super) fn from_db(n: i64, what: &str) -> Result<u64, Error> {
    u64::try_from(n).map_err(|_| Error::Store(format!("negative {what} {n} in the store")))
}

/// The lookup key of a stored leaf hash column, which an edit may have made shorter than 32
/// bytes (a full verification reports that; the key only has to be defined).
pub(super) fn stored_leaf_key(bytes: &[u8]) -> i64 {
    let mut first = [0; 8];
    let n = bytes.len().min(8);
    first[..n].copy_from_slice(&bytes[..n]);
    i64::from_be_bytes(first)
}

/// A stored hash, which must be 32 bytes; anything else is tampering at `index`.
pub(super) fn to_hash(bytes: &[u8], index: u64, what: &str) -> Result<Hash, Error> {
    bytes
        .try_into()
        .map_err(|_| Error::Tampered { index, what: format!("the stored {what} is {} bytes, not 32", bytes.len()) })
}

/// A database error, as a store error.
pub(super) fn db_err(context: &str) -> impl Fn(sqlx::Error) -> Error + '_ {
    move |e| Error::Store(format!("{context}: {e}"))
}

/// What differs between the dialects, beyond the driver.
#[derive(Debug)]
pub(super) struct Dialect {
    /// The schema, run by `init`.
    pub(super) schema: &'static str,
    /// Opens a write transaction.
    pub(super) begin_write: &'static str,
    /// Reads the store format inside the upgrade transaction, locking out a concurrent upgrade.
    pub(super) lock_format: &'static str,
    /// The format 1 → 2 upgrade script, in two halves around [`UPGRADE_FILL_MARKER`].
    pub(super) upgrade_2: &'static str,
    /// The format 2 → 3 upgrade script.
    pub(super) upgrade_3: &'static str,
    /// How the big statements write placeholders.
    pub(super) placeholders: Placeholders,
}

/// Implements [`super::AuditStore`] for `$store`, a struct with `pool: sqlx::Pool<$db>` for reads
/// and `write: sqlx::Pool<$db>` for writes, where `$dialect` is the [`Dialect`]. The store's
/// inherent `append_rows`, `scan_rows` and `close_rows` do the two hot loops ([`impl_sqlx_rows`] makes them
/// with sqlx).
macro_rules! impl_audit_store {
    ($store:ty, $db:ty, $dialect:expr) => {
        impl $crate::audit::store::AuditStore for $store {
            async fn init(&self, metadata: &$crate::audit::store::LogMetadata) -> Result<(), $crate::Error> {
                use $crate::audit::store::sql::db_err;
                let exists = sqlx::query("SELECT id FROM audit_metadata").fetch_optional(&self.pool).await;
                if exists.is_ok() {
                    return Err($crate::Error::Audit("an audit log already exists in this store".into()));
                }
                let mut tx = self.write.begin().await.map_err(db_err("begin"))?;
                sqlx::raw_sql($dialect.schema).execute(&mut *tx).await.map_err(db_err("creating the audit tables"))?;
                sqlx::query(
                    "INSERT INTO audit_metadata (id, format, hash_algorithm, origin, public_key, created_ms) \
                     VALUES (1, $1, $2, $3, $4, $5)",
                )
                .bind($crate::audit::store::STORE_FORMAT)
                .bind(metadata.hash.name())
                .bind(metadata.origin.as_str())
                .bind(metadata.public_key.as_slice())
                .bind(metadata.created)
                .execute(&mut *tx)
                .await
                .map_err(db_err("writing the audit metadata"))?;
                tx.commit().await.map_err(db_err("commit"))
            }

            async fn upgrade(&self) -> Result<Option<i64>, $crate::Error> {
                use $crate::audit::store::sql::db_err;
                let dialect: &$crate::audit::store::sql::Dialect = &$dialect;
                // Without a log (or a readable metadata row) there is nothing to upgrade, and
                // `metadata` says what is wrong.
                let Ok(Some(format)) = sqlx::query_scalar::<_, i64>("SELECT format FROM audit_metadata WHERE id = 1")
                    .fetch_optional(&self.pool)
                    .await
                else {
                    return Ok(None);
                };
                if !(1..$crate::audit::store::STORE_FORMAT).contains(&format) {
                    return Ok(None);
                }
                let mut tx = self.write.begin_with(dialect.begin_write).await.map_err(db_err("begin"))?;
                let format: i64 = sqlx::query_scalar(dialect.lock_format)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db_err("reading the store format"))?;
                if !(1..$crate::audit::store::STORE_FORMAT).contains(&format) {
                    return Ok(None); // another process upgraded it meanwhile
                }
                if format == 1 {
                    self.upgrade_1_to_2(&mut tx).await?;
                }
                sqlx::raw_sql(dialect.upgrade_3).execute(&mut *tx).await.map_err(db_err("upgrading the audit store"))?;
                tx.commit().await.map_err(db_err("committing the store upgrade"))?;
                Ok(Some(format))
            }

            async fn metadata(&self) -> Result<$crate::audit::store::LogMetadata, $crate::Error> {
                use sqlx::Row as _;
                use $crate::audit::store::sql::db_err;
                let row = sqlx::query(
                    "SELECT format, hash_algorithm, origin, public_key, created_ms FROM audit_metadata WHERE id = 1",
                )
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err("reading the audit metadata (is this an audit log?)"))?
                .ok_or_else(|| $crate::Error::Store("the audit metadata row is missing".into()))?;
                let format: i64 = row.try_get(0).map_err(db_err("metadata"))?;
                if format != $crate::audit::store::STORE_FORMAT {
                    return Err($crate::Error::Store(format!("audit store format {format} is not supported")));
                }
                let hash: String = row.try_get(1).map_err(db_err("metadata"))?;
                Ok($crate::audit::store::LogMetadata {
                    hash: hash.parse()?,
                    origin: row.try_get(2).map_err(db_err("metadata"))?,
                    public_key: row.try_get(3).map_err(db_err("metadata"))?,
                    created: row.try_get(4).map_err(db_err("metadata"))?,
                })
            }

            async fn append(
                &self,
                first: u64,
                records: Vec<$crate::audit::store::StoredRecord>,
                nodes: Vec<($crate::audit::merkle::NodeId, $crate::audit::merkle::Hash)>,
            ) -> Result<(), $crate::Error> {
                if records.first().map(|r| r.index) != Some(first) {
                    return Err($crate::Error::Audit("an append batch must start at the writer's size".into()));
                }
                // No separate size check: leaf `first` is node (0, first), so a writer whose idea
                // of the size is stale collides with the primary key and nothing is written.
                self.append_rows(records, nodes).await
            }

            async fn leaf_count(&self) -> Result<u64, $crate::Error> {
                Ok(self.max_node_index(0).await?.map_or(0, |m| m + 1))
            }

            async fn max_node_index(&self, level: u8) -> Result<Option<u64>, $crate::Error> {
                use $crate::audit::store::sql::{db_err, from_db};
                let max: Option<i64> = sqlx::query_scalar("SELECT MAX(idx) FROM audit_nodes WHERE level = $1")
                    .bind(i64::from(level))
                    .fetch_one(&self.pool)
                    .await
                    .map_err(db_err("reading tree nodes"))?;
                max.map(|m| from_db(m, "node index")).transpose()
            }

            async fn nodes(
                &self,
                ids: &[$crate::audit::merkle::NodeId],
            ) -> Result<Vec<($crate::audit::merkle::NodeId, $crate::audit::merkle::Hash)>, $crate::Error> {
                use sqlx::Row as _;
                use $crate::audit::store::sql::{MAX_NODE_IDS_PER_QUERY, db_err, from_db, nodes_sql, to_db, to_hash};
                let mut out = Vec::with_capacity(ids.len());
                for part in ids.chunks(MAX_NODE_IDS_PER_QUERY) {
                    // Persistent: the text depends only on the number of ids (at most
                    // MAX_NODE_IDS_PER_QUERY shapes), and a proof would otherwise spend most of its
                    // time parsing and planning the statement.
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(nodes_sql(part.len())));
                    for id in part {
                        q = q.bind(i64::from(id.level)).bind(to_db(id.index)?);
                    }
                    for row in q.fetch_all(&self.pool).await.map_err(db_err("reading tree nodes"))? {
                        let level: i64 = row.try_get(0).map_err(db_err("node"))?;
                        let index = from_db(row.try_get(1).map_err(db_err("node"))?, "node index")?;
                        let level = u8::try_from(level)
                            .map_err(|_| $crate::Error::Store(format!("tree node level {level} in the store")))?;
                        let id = $crate::audit::merkle::NodeId { level, index };
                        let hash: Vec<u8> = row.try_get(2).map_err(db_err("node"))?;
                        out.push((id, to_hash(&hash, id.first_leaf(), "tree node hash")?));
                    }
                }
                Ok(out)
            }

            async fn level_range(
                &self,
                level: u8,
                first: u64,
                last: u64,
            ) -> Result<Vec<(u64, $crate::audit::merkle::Hash)>, $crate::Error> {
                use sqlx::Row as _;
                use $crate::audit::store::sql::{db_err, from_db, to_db, to_hash};
                let rows = sqlx::query(
                    "SELECT idx, hash FROM audit_nodes WHERE level = $1 AND idx >= $2 AND idx <= $3 ORDER BY idx",
                )
                .bind(i64::from(level))
                .bind(to_db(first)?)
                .bind(to_db(last)?)
                .fetch_all(&self.pool)
                .await
                .map_err(db_err("reading tree nodes"))?;
                rows.iter()
                    .map(|row| {
                        let index = from_db(row.try_get(0).map_err(db_err("node"))?, "node index")?;
                        let hash: Vec<u8> = row.try_get(1).map_err(db_err("node"))?;
                        Ok((index, to_hash(&hash, index << level, "tree node hash")?))
                    })
                    .collect()
            }

            async fn records(
                &self,
                from: u64,
                limit: u32,
            ) -> Result<Vec<$crate::audit::store::StoredRecord>, $crate::Error> {
                use $crate::audit::store::sql::{db_err, to_db};
                let rows = sqlx::query(
                    "SELECT idx, time_ms, actor, event, object, record, leaf_hash FROM audit_records \
                     WHERE idx >= $1 ORDER BY idx LIMIT $2",
                )
                .bind(to_db(from)?)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(db_err("reading audit records"))?;
                rows.iter().map(record_from_row).collect()
            }

            async fn scan_leaves<F>(&self, from: u64, end: u64, check: F) -> Result<(), $crate::Error>
            where
                F: FnMut(&$crate::audit::store::LeafRow<'_>) -> Result<(), $crate::Error> + Send,
            {
                self.scan_rows(from, end, check).await
            }

            async fn record(&self, index: u64) -> Result<Option<$crate::audit::store::StoredRecord>, $crate::Error> {
                use $crate::audit::store::sql::{db_err, to_db};
                let row = sqlx::query(
                    "SELECT idx, time_ms, actor, event, object, record, leaf_hash FROM audit_records WHERE idx = $1",
                )
                .bind(to_db(index)?)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err("reading an audit record"))?;
                row.as_ref().map(record_from_row).transpose()
            }

            async fn last_record_index(&self) -> Result<Option<u64>, $crate::Error> {
                use $crate::audit::store::sql::{db_err, from_db};
                let max: Option<i64> = sqlx::query_scalar("SELECT MAX(idx) FROM audit_records")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(db_err("reading audit records"))?;
                max.map(|m| from_db(m, "record index")).transpose()
            }

            async fn find_leaf(&self, leaf_hash: &$crate::audit::merkle::Hash) -> Result<Option<u64>, $crate::Error> {
                use $crate::audit::store::sql::{db_err, epochs_sql, from_db};
                let Some(last) = self.last_record_index().await? else { return Ok(None) };
                let sql = format!(
                    "SELECT idx FROM audit_records WHERE {} AND leaf_key = $1 AND leaf_hash = $2 ORDER BY idx LIMIT 1",
                    epochs_sql(0, last)
                );
                let idx: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .persistent(false)
                    .bind($crate::audit::store::leaf_key(leaf_hash))
                    .bind(&leaf_hash[..])
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err("looking up a leaf hash"))?;
                idx.map(|i| from_db(i, "record index")).transpose()
            }

            async fn first_at_or_after(&self, from: u64, time: i64) -> Result<Option<u64>, $crate::Error> {
                use $crate::audit::store::sql::{db_err, from_db, to_db};
                let idx: Option<i64> =
                    sqlx::query_scalar("SELECT MIN(idx) FROM audit_records WHERE idx >= $1 AND time_ms >= $2")
                        .bind(to_db(from)?)
                        .bind(time)
                        .fetch_one(&self.pool)
                        .await
                        .map_err(db_err("reading audit records"))?;
                idx.map(|i| from_db(i, "record index")).transpose()
            }

            async fn query(
                &self,
                filter: &$crate::audit::store::QueryFilter,
            ) -> Result<Vec<$crate::audit::store::StoredRecord>, $crate::Error> {
                use $crate::audit::store::sql::{Param, db_err, query_sql};
                let Some(last) = self.last_record_index().await? else { return Ok(Vec::new()) };
                let (sql, params) = query_sql(filter, last)?;
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false);
                for p in params {
                    q = match p {
                        Param::Int(i) => q.bind(i),
                        Param::Text(s) => q.bind(s),
                    };
                }
                let rows = q.fetch_all(&self.pool).await.map_err(db_err("querying audit records"))?;
                rows.iter().map(record_from_row).collect()
            }

            async fn add_head(&self, head: &$crate::audit::store::StoredHead) -> Result<(), $crate::Error> {
                use $crate::audit::store::sql::{db_err, to_db};
                sqlx::query(
                    "INSERT INTO audit_heads (tree_size, root, checkpoint, time_ms) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (tree_size) DO NOTHING",
                )
                .bind(to_db(head.size)?)
                .bind(&head.root[..])
                .bind(head.checkpoint.as_str())
                .bind(head.time)
                .execute(&self.write)
                .await
                .map_err(db_err("storing a signed tree head"))?;
                Ok(())
            }

            async fn latest_head(&self) -> Result<Option<$crate::audit::store::StoredHead>, $crate::Error> {
                use $crate::audit::store::sql::db_err;
                let row = sqlx::query(
                    "SELECT tree_size, root, checkpoint, time_ms FROM audit_heads ORDER BY tree_size DESC LIMIT 1",
                )
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err("reading signed tree heads"))?;
                row.as_ref().map(head_from_row).transpose()
            }

            async fn heads(
                &self,
                from_size: u64,
                limit: u32,
            ) -> Result<Vec<$crate::audit::store::StoredHead>, $crate::Error> {
                use $crate::audit::store::sql::{db_err, to_db};
                let rows = sqlx::query(
                    "SELECT tree_size, root, checkpoint, time_ms FROM audit_heads WHERE tree_size >= $1 \
                     ORDER BY tree_size LIMIT $2",
                )
                .bind(to_db(from_size)?)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(db_err("reading signed tree heads"))?;
                rows.iter().map(head_from_row).collect()
            }

            async fn purge(&self, mark: &$crate::audit::store::PurgeMark) -> Result<u64, $crate::Error> {
                use $crate::audit::store::sql::{db_err, to_db};
                let mut tx = self.write.begin_with($dialect.begin_write).await.map_err(db_err("begin"))?;
                sqlx::query("INSERT INTO audit_purges (before_idx, from_idx, time_ms, checkpoint) VALUES ($1, $2, $3, $4)")
                    .bind(to_db(mark.before)?)
                    .bind(to_db(mark.from)?)
                    .bind(mark.time)
                    .bind(mark.checkpoint.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("recording the purge"))?;
                let done = sqlx::query("DELETE FROM audit_records WHERE idx >= $1 AND idx < $2")
                    .bind(to_db(mark.from)?)
                    .bind(to_db(mark.before)?)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("deleting purged records"))?;
                tx.commit().await.map_err(db_err("committing the purge"))?;
                Ok(done.rows_affected())
            }

            async fn latest_purge(&self) -> Result<Option<$crate::audit::store::PurgeMark>, $crate::Error> {
                use sqlx::Row as _;
                use $crate::audit::store::sql::{db_err, from_db};
                let row = sqlx::query(
                    "SELECT from_idx, before_idx, time_ms, checkpoint FROM audit_purges ORDER BY before_idx DESC LIMIT 1",
                )
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err("reading purge marks"))?;
                let Some(row) = row else { return Ok(None) };
                Ok(Some($crate::audit::store::PurgeMark {
                    from: from_db(row.try_get(0).map_err(db_err("purge mark"))?, "purge index")?,
                    before: from_db(row.try_get(1).map_err(db_err("purge mark"))?, "purge index")?,
                    time: row.try_get(2).map_err(db_err("purge mark"))?,
                    checkpoint: row.try_get(3).map_err(db_err("purge mark"))?,
                }))
            }

            async fn close(&self) {
                self.close_rows();
                self.write.close().await;
                self.pool.close().await;
            }
        }

        impl $store {
            /// Format 1 → 2 inside the upgrade transaction: adds and fills the lookup keys.
            async fn upgrade_1_to_2(
                &self,
                tx: &mut sqlx::Transaction<'static, $db>,
            ) -> Result<(), $crate::Error> {
                use sqlx::Row as _;
                use $crate::audit::store::sql::{
                    UPGRADE_FILL_MARKER, UPGRADE_READ, chunks, db_err, fill_keys_sql, stored_leaf_key,
                };
                use $crate::audit::store::text_key;
                let dialect: &$crate::audit::store::sql::Dialect = &$dialect;
                let (before, after) = dialect
                    .upgrade_2
                    .split_once(UPGRADE_FILL_MARKER)
                    .ok_or_else(|| $crate::Error::Store("the upgrade script has no fill marker".into()))?;
                sqlx::raw_sql(before).execute(&mut **tx).await.map_err(db_err("upgrading the audit store"))?;
                let mut next = 0i64;
                loop {
                    let rows = sqlx::query(
                        "SELECT idx, leaf_hash, actor, object FROM audit_records WHERE idx >= $1 ORDER BY idx LIMIT $2",
                    )
                    .bind(next)
                    .bind(UPGRADE_READ)
                    .fetch_all(&mut **tx)
                    .await
                    .map_err(db_err("reading audit records to upgrade"))?;
                    let mut keys = Vec::with_capacity(rows.len());
                    for row in &rows {
                        let idx: i64 = row.try_get(0).map_err(db_err("audit record"))?;
                        let leaf: &[u8] = row.try_get(1).map_err(db_err("audit record"))?;
                        let actor: &str = row.try_get(2).map_err(db_err("audit record"))?;
                        let object: Option<&str> = row.try_get(3).map_err(db_err("audit record"))?;
                        keys.push((idx, stored_leaf_key(leaf), text_key(actor), object.map(text_key)));
                        next = idx + 1;
                    }
                    if keys.is_empty() {
                        break;
                    }
                    for (_, start, end) in chunks(keys.len()) {
                        let mut q = sqlx::query(sqlx::AssertSqlSafe(fill_keys_sql(end - start, dialect.placeholders)));
                        for (idx, leaf, actor, object) in &keys[start..end] {
                            q = q.bind(*idx).bind(*leaf).bind(*actor).bind(*object);
                        }
                        q.execute(&mut **tx).await.map_err(db_err("writing lookup keys"))?;
                    }
                }
                sqlx::raw_sql(after).execute(&mut **tx).await.map_err(db_err("upgrading the audit store"))?;
                Ok(())
            }
        }

        /// A record row (columns in [`RECORD_COLUMNS`](super::sql::RECORD_COLUMNS) order).
        fn record_from_row(
            row: &<$db as sqlx::Database>::Row,
        ) -> Result<$crate::audit::store::StoredRecord, $crate::Error> {
            use sqlx::Row as _;
            use $crate::audit::store::sql::{db_err, from_db, to_hash};
            let index = from_db(row.try_get(0).map_err(db_err("audit record"))?, "record index")?;
            let leaf: Vec<u8> = row.try_get(6).map_err(db_err("audit record"))?;
            Ok($crate::audit::store::StoredRecord {
                index,
                time: row.try_get(1).map_err(db_err("audit record"))?,
                actor: row.try_get(2).map_err(db_err("audit record"))?,
                event: row.try_get(3).map_err(db_err("audit record"))?,
                object: row.try_get(4).map_err(db_err("audit record"))?,
                der: row.try_get(5).map_err(db_err("audit record"))?,
                leaf_hash: to_hash(&leaf, index, "leaf hash")?,
            })
        }

        /// A head row.
        fn head_from_row(row: &<$db as sqlx::Database>::Row) -> Result<$crate::audit::store::StoredHead, $crate::Error> {
            use sqlx::Row as _;
            use $crate::audit::store::sql::{db_err, from_db, to_hash};
            let size = from_db(row.try_get(0).map_err(db_err("tree head"))?, "tree size")?;
            let root: Vec<u8> = row.try_get(1).map_err(db_err("tree head"))?;
            Ok($crate::audit::store::StoredHead {
                size,
                root: to_hash(&root, size.saturating_sub(1), "tree head root")?,
                checkpoint: row.try_get(2).map_err(db_err("tree head"))?,
                time: row.try_get(3).map_err(db_err("tree head"))?,
            })
        }
    };
}

pub(super) use impl_audit_store;

/// The batch insert and the verification scan through sqlx (the PostgreSQL store's; SQLite has
/// its own, see `sqlite.rs`), as inherent methods of `$store` that [`impl_audit_store`] calls.
macro_rules! impl_sqlx_rows {
    ($store:ty, $db:ty, $dialect:expr, $inserts:expr) => {
        impl $store {
            /// Nothing of its own to close: the hot loops use the store's pools.
            fn close_rows(&self) {}

            /// Inserts a batch in one transaction, in multi-row INSERTs.
            async fn append_rows(
                &self,
                records: Vec<$crate::audit::store::StoredRecord>,
                nodes: Vec<($crate::audit::merkle::NodeId, $crate::audit::merkle::Hash)>,
            ) -> Result<(), $crate::Error> {
                use $crate::audit::store::sql::{chunks, db_err, to_db};
                use $crate::audit::store::{leaf_key, text_key};
                let inserts: &$crate::audit::store::sql::Inserts = &$inserts;
                let mut tx = self.write.begin_with($dialect.begin_write).await.map_err(db_err("begin"))?;
                for (stmt, start, end) in chunks(records.len()) {
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(inserts.records[stmt].clone()));
                    for r in &records[start..end] {
                        q = q
                            .bind(to_db(r.index)?)
                            .bind(r.time)
                            .bind(r.actor.as_str())
                            .bind(r.event.as_str())
                            .bind(r.object.as_deref())
                            .bind(r.der.as_slice())
                            .bind(&r.leaf_hash[..])
                            .bind(leaf_key(&r.leaf_hash))
                            .bind(text_key(&r.actor))
                            .bind(r.object.as_deref().map(text_key));
                    }
                    q.execute(&mut *tx).await.map_err(db_err("inserting audit records"))?;
                }
                for (stmt, start, end) in chunks(nodes.len()) {
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(inserts.nodes[stmt].clone()));
                    for (id, hash) in &nodes[start..end] {
                        q = q.bind(i64::from(id.level)).bind(to_db(id.index)?).bind(&hash[..]);
                    }
                    q.execute(&mut *tx)
                        .await
                        .map_err(db_err("inserting tree nodes (a second writer appending to this log?)"))?;
                }
                tx.commit().await.map_err(db_err("committing audit records"))
            }

            /// Streams [`SCAN_LEAVES`](super::sql::SCAN_LEAVES) rows through `check`.
            async fn scan_rows<F>(&self, from: u64, end: u64, mut check: F) -> Result<(), $crate::Error>
            where
                F: FnMut(&$crate::audit::store::LeafRow<'_>) -> Result<(), $crate::Error> + Send,
            {
                use $crate::audit::store::sql::{SCAN_LEAVES, db_err, to_db};
                // The rows are checked as the driver hands them over (no Vec of rows, no owned
                // copies of their columns); the first failed check ends the query.
                let mut failed = None;
                let done = sqlx::query(SCAN_LEAVES)
                    .bind(to_db(from)?)
                    .bind(to_db(end)?)
                    .try_map(|row: <$db as sqlx::Database>::Row| {
                        leaf_from_row(&row).and_then(|leaf| check(&leaf)).map_err(|e| {
                            failed = Some(e);
                            sqlx::Error::RowNotFound // stops the stream; `failed` says why
                        })
                    })
                    .fetch_all(&self.pool)
                    .await;
                match (failed, done) {
                    (Some(e), _) => Err(e),
                    (None, Ok(_)) => Ok(()),
                    (None, Err(e)) => Err(db_err("reading audit records")(e)),
                }
            }
        }

        /// A row of [`SCAN_LEAVES`](super::sql::SCAN_LEAVES), borrowed.
        fn leaf_from_row(
            row: &<$db as sqlx::Database>::Row,
        ) -> Result<$crate::audit::store::LeafRow<'_>, $crate::Error> {
            use sqlx::Row as _;
            use $crate::audit::store::sql::{db_err, unpack_leaf_row};
            let e = db_err("audit record");
            unpack_leaf_row(row.try_get(2).map_err(&e)?, row.try_get(0).map_err(&e)?, row.try_get(1).map_err(&e)?)
        }
    };
}

pub(super) use impl_sqlx_rows;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_batches_into_prepared_statement_sizes() {
        assert_eq!(chunks(0), vec![]);
        assert_eq!(chunks(1), vec![(0, 0, 1)]);
        assert_eq!(chunks(15), vec![(14, 0, 15)]);
        assert_eq!(chunks(600), vec![(255, 0, 256), (255, 256, 512), (87, 512, 600)]);
        assert_eq!(POSTGRES_INSERTS.records.len(), MAX_ROWS_PER_INSERT);
        assert!(POSTGRES_INSERTS.records[1].ends_with("($11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"));
        assert!(
            insert_sql("audit_nodes", "level, idx, hash", 3, 2, Placeholders::Anonymous)
                .ends_with("VALUES (?, ?, ?), (?, ?, ?)")
        );
    }

    #[test]
    fn builds_numbered_placeholders() {
        assert_eq!(
            &*insert_sql("t", "a, b", 2, 2, Placeholders::Numbered),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)"
        );
        assert_eq!(
            nodes_sql(2),
            "SELECT level, idx, hash FROM audit_nodes WHERE (level = $1 AND idx = $2) OR (level = $3 AND idx = $4)"
        );
        let (sql, params) =
            query_sql(&QueryFilter { from_time: Some(5), limit: 10, ..QueryFilter::default() }, 9).unwrap();
        assert!(sql.ends_with("WHERE 1 = 1 AND time_ms >= $1 AND 1 = 1 ORDER BY idx LIMIT $2"), "{sql}");
        assert_eq!(params.len(), 2);
        let filter = QueryFilter { object: Some("o".into()), from_index: Some(70_000), ..QueryFilter::default() };
        let (sql, _) = query_sql(&filter, 200_000).unwrap();
        assert!(sql.contains("AND (idx >> 16) IN (1, 2, 3) AND object_key = $1 AND object = $2 "), "{sql}");
        assert_eq!(
            fill_keys_sql(2, Placeholders::Anonymous),
            "WITH v (i, l, a, o) AS (VALUES (?, ?, ?, ?), (?, ?, ?, ?)) UPDATE audit_records SET leaf_key = v.l, \
             actor_key = v.a, object_key = v.o FROM v WHERE audit_records.idx = v.i"
        );
        assert_eq!(stored_leaf_key(&[0, 0, 0, 0, 0, 0, 1, 2, 9]), 0x0102);
        assert_eq!(stored_leaf_key(&[0xff]), i64::from_be_bytes([0xff, 0, 0, 0, 0, 0, 0, 0]));
    }

    #[test]
    fn the_schemas_use_the_epoch_of_the_code() {
        assert_eq!(epochs_sql(0, 0), "(idx >> 16) IN (0)");
        assert_eq!(epochs_sql(65_535, 65_536 * 2), "(idx >> 16) IN (0, 1, 2)");
        let epoch = format!("idx >> {EPOCH_BITS}");
        for schema in [
            include_str!("sqlite.sql"),
            include_str!("postgres.sql"),
            include_str!("sqlite_upgrade_3.sql"),
            include_str!("postgres_upgrade_3.sql"),
        ] {
            let indexes: Vec<_> = schema.lines().filter(|l| l.starts_with("CREATE INDEX")).collect();
            for name in ["audit_records_object", "audit_records_leaf"] {
                let line = indexes.iter().find(|l| l.contains(name)).expect("index defined");
                assert!(line.contains(&epoch), "{line}");
            }
        }
    }

    #[test]
    fn unpacks_verification_rows() {
        let row = unpack_leaf_row("7,1700,-5,9,,1,8:login_ok11:account:a,b0:", b"d", b"h").unwrap();
        assert_eq!(
            (row.index, row.time, row.leaf_key, row.actor_key, row.object_key, row.node_matches),
            (7, 1700, -5, 9, None, Some(true))
        );
        assert_eq!((row.event, row.actor, row.object), ("login_ok", "account:a,b", Some("")));
        let row = unpack_leaf_row("7,1,2,3,4,,5:issue3:李", b"d", b"h").unwrap();
        assert_eq!((row.object_key, row.node_matches, row.actor, row.object), (Some(4), None, "李", None));
        assert_eq!(unpack_leaf_row("7,1,2,3,4,0,5:issue3:abc", b"d", b"h").unwrap().node_matches, Some(false));
        for bad in ["7,1,2,3,4,0,5:issue9:abc", "7,1,2,3,4,0,5:issue3:abc2:x", "7,x,2,3,,,1:a1:b", "7,1,2"] {
            assert!(matches!(unpack_leaf_row(bad, b"", b""), Err(Error::Tampered { index: 7, .. })), "{bad}");
        }
    }
}
