//! Versioned migrations, embedded in the binary and applied at start-up under an advisory lock.

use tokio_postgres::Client;

use crate::error::{db_err, PgError};

/// Every migration in order; version n is `MIGRATIONS[n - 1]`. `{schema}` stands for the
/// quoted schema name.
const MIGRATIONS: &[(&str, &str)] = &[
    ("initial tables", V1),
    ("commit leader epochs; commit metadata as bytes", V2),
    ("Kafka record batches as rows: batches.data, delays", V3),
    ("SCRAM credentials and ACLs", V4),
    ("brokers of a cluster and group coordinators", V5),
    ("settings per group name (share groups)", V6),
    (
        "transactions: open and aborted transactions, control batches",
        V7,
    ),
    (
        "compaction: cleaned-to offsets, record counts of compacted batches",
        V8,
    ),
];

/// The newest schema version this binary knows.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Settings kept per group name (Kafka's GROUP config resource, e.g. share-group settings):
/// one row per group holding the whole map, so replacing it is a single upsert and two
/// concurrent replacements never merge. Keys and values are the UTF-8 bytes of the strings
/// (text cannot hold U+0000), in key order; a group without settings has no row.
const V6: &str = r#"
CREATE TABLE IF NOT EXISTS {schema}.group_configs (
    grp    text    PRIMARY KEY,
    keys   bytea[] NOT NULL,
    vals   bytea[] NOT NULL,
    CHECK (cardinality(keys) = cardinality(vals) AND cardinality(keys) > 0)
);
"#;

/// Transactions (KIP-98). `batches.txn` marks batches of a transaction (data and markers),
/// `batches.control` the markers (control batches, no records of the record-level API);
/// both default to false, so existing rows stay valid and nothing is rewritten. Per
/// partition, `open_txns` holds the first offset of each producer's open transaction (the
/// last stable offset is the smallest) and `aborted_txns` every aborted transaction up to its
/// abort marker (kept until the marker is below the log start). `producer_state` gains the
/// append time of the producer's newest batch or marker (NULL in rows written before: read
/// from its newest batch instead). `lease_groups.read_uncommitted` marks groups whose leases
/// read uncommitted (existing groups read committed).
const V7: &str = r#"
ALTER TABLE {schema}.batches ADD COLUMN IF NOT EXISTS txn boolean NOT NULL DEFAULT false;
ALTER TABLE {schema}.batches ADD COLUMN IF NOT EXISTS control boolean NOT NULL DEFAULT false;
CREATE INDEX IF NOT EXISTS batches_txn ON {schema}.batches (topic_id, partition, base_offset)
    WHERE txn;
ALTER TABLE {schema}.producer_state ADD COLUMN IF NOT EXISTS last_timestamp_ms bigint;
ALTER TABLE {schema}.lease_groups
    ADD COLUMN IF NOT EXISTS read_uncommitted boolean NOT NULL DEFAULT false;
CREATE TABLE IF NOT EXISTS {schema}.open_txns (
    topic_id     bigint NOT NULL,
    partition    int    NOT NULL,
    producer_id  bigint NOT NULL,
    first_offset bigint NOT NULL,
    PRIMARY KEY (topic_id, partition, producer_id)
);
CREATE INDEX IF NOT EXISTS open_txns_first ON {schema}.open_txns (topic_id, partition, first_offset);
CREATE TABLE IF NOT EXISTS {schema}.aborted_txns (
    topic_id      bigint NOT NULL,
    partition     int    NOT NULL,
    producer_id   bigint NOT NULL,
    first_offset  bigint NOT NULL,
    marker_offset bigint NOT NULL,
    PRIMARY KEY (topic_id, partition, marker_offset)
);
CREATE INDEX IF NOT EXISTS aborted_txns_first
    ON {schema}.aborted_txns (topic_id, partition, first_offset);
CREATE INDEX IF NOT EXISTS aborted_txns_producer
    ON {schema}.aborted_txns (topic_id, partition, producer_id, first_offset);
"#;

/// Log compaction. Per partition, `cleaned_to`: every batch below it was cleaned by a
/// finished compaction (the dirty range, whose keys the next compaction maps, starts there);
/// `sparse_to`: no batch at or past it has lost records to compaction (raised before a
/// compaction rewrites anything, so the dense fast paths, e.g. the fast lease, stay exact).
/// `batches.records` is the record count of a compacted batch (fewer than its offsets, which
/// keep their gaps); NULL for a batch never compacted (one record per offset). Constant
/// defaults: no row is rewritten.
const V8: &str = r#"
ALTER TABLE {schema}.partitions ADD COLUMN IF NOT EXISTS cleaned_to bigint NOT NULL DEFAULT 0;
ALTER TABLE {schema}.partitions ADD COLUMN IF NOT EXISTS sparse_to bigint NOT NULL DEFAULT 0;
ALTER TABLE {schema}.batches ADD COLUMN IF NOT EXISTS records int;
"#;

/// Brokers sharing the schema (one row per node id: its latest registration) and the
/// coordinator of each consumer group, with its fencing epoch and saved state.
const V5: &str = r#"
CREATE TABLE IF NOT EXISTS {schema}.brokers (
    node_id       int     PRIMARY KEY,
    incarnation   bigint  NOT NULL,
    listeners     text[]  NOT NULL,
    hosts         text[]  NOT NULL,
    ports         int[]   NOT NULL,
    http_addr     text    NOT NULL,
    rack          text,
    lapse_ms      bigint  NOT NULL,
    registered_ms bigint  NOT NULL,
    heartbeat_ms  bigint  NOT NULL,
    left_cluster  boolean NOT NULL DEFAULT false
);
CREATE SEQUENCE IF NOT EXISTS {schema}.broker_incarnations MINVALUE 1 START 1;
CREATE TABLE IF NOT EXISTS {schema}.group_coordinators (
    grp          text   PRIMARY KEY,
    epoch        bigint NOT NULL,
    node_id      int    NOT NULL,
    incarnation  bigint NOT NULL,
    state        bytea
);
"#;

/// Salted SCRAM credentials (never a password) and ACL bindings with Kafka's codes.
const V4: &str = r#"
CREATE TABLE IF NOT EXISTS {schema}.scram_credentials (
    username   text  NOT NULL,
    mechanism  text  NOT NULL CHECK (mechanism IN ('SCRAM-SHA-256', 'SCRAM-SHA-512')),
    salt       bytea NOT NULL,
    iterations int   NOT NULL,
    stored_key bytea NOT NULL,
    server_key bytea NOT NULL,
    PRIMARY KEY (username, mechanism)
);

CREATE TABLE IF NOT EXISTS {schema}.acls (
    resource_type   smallint NOT NULL,
    resource_name   text     NOT NULL,
    pattern_type    smallint NOT NULL,
    principal       text     NOT NULL,
    host            text     NOT NULL,
    operation       smallint NOT NULL,
    permission_type smallint NOT NULL,
    PRIMARY KEY (resource_type, resource_name, pattern_type, principal, host, operation,
                 permission_type)
);
"#;

const V1: &str = r#"
CREATE TABLE {schema}.topics (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name             text   NOT NULL UNIQUE,
    partitions       int    NOT NULL CHECK (partitions > 0),
    max_record_bytes bigint NOT NULL,
    config           jsonb  NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);

-- One row per partition: its watermark row, locked by every append.
CREATE TABLE {schema}.partitions (
    topic_id    bigint NOT NULL REFERENCES {schema}.topics (id) ON DELETE CASCADE,
    partition   int    NOT NULL,
    log_start   bigint NOT NULL DEFAULT 0,
    next_offset bigint NOT NULL DEFAULT 0,
    purged_to   bigint NOT NULL DEFAULT 0,
    bytes       bigint NOT NULL DEFAULT 0,
    max_ts      bigint,
    PRIMARY KEY (topic_id, partition)
) WITH (fillfactor = 50);

CREATE TABLE {schema}.records (
    topic_id      bigint  NOT NULL,
    partition     int     NOT NULL,
    "offset"      bigint  NOT NULL,
    timestamp_ms  bigint  NOT NULL,
    not_before_ms bigint,
    key           bytea,
    value         bytea,
    header_keys   text[],
    header_values bytea[],
    size          int     NOT NULL,
    PRIMARY KEY (topic_id, partition, "offset")
);
CREATE INDEX records_not_before ON {schema}.records (topic_id, partition, "offset")
    WHERE not_before_ms IS NOT NULL;

CREATE TABLE {schema}.batches (
    topic_id       bigint   NOT NULL,
    partition      int      NOT NULL,
    base_offset    bigint   NOT NULL,
    last_offset    bigint   NOT NULL,
    max_ts         bigint   NOT NULL,
    ts_high        bigint   NOT NULL,
    bytes          bigint   NOT NULL,
    append_time_ms bigint   NOT NULL,
    producer_id    bigint,
    epoch          smallint,
    first_seq      int,
    PRIMARY KEY (topic_id, partition, base_offset)
);
CREATE INDEX batches_ts_high ON {schema}.batches (topic_id, partition, ts_high, base_offset);
CREATE INDEX batches_producer ON {schema}.batches (topic_id, partition, producer_id, base_offset)
    WHERE producer_id IS NOT NULL;

CREATE TABLE {schema}.producer_state (
    topic_id    bigint   NOT NULL,
    partition   int      NOT NULL,
    producer_id bigint   NOT NULL,
    epoch       smallint NOT NULL,
    last_seq    int      NOT NULL,
    PRIMARY KEY (topic_id, partition, producer_id)
) WITH (fillfactor = 70);

CREATE SEQUENCE {schema}.producer_ids MINVALUE 0 START 0;

CREATE TABLE {schema}.consumer_offsets (
    grp       text   NOT NULL,
    topic_id  bigint NOT NULL REFERENCES {schema}.topics (id) ON DELETE CASCADE,
    partition int    NOT NULL,
    "offset"  bigint NOT NULL,
    metadata  text   NOT NULL,
    PRIMARY KEY (grp, topic_id, partition)
);
CREATE INDEX consumer_offsets_topic ON {schema}.consumer_offsets (topic_id);

CREATE TABLE {schema}.lease_groups (
    id                bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic_id          bigint  NOT NULL REFERENCES {schema}.topics (id) ON DELETE CASCADE,
    name              text    NOT NULL,
    max_deliveries    int,
    dead_letter_topic text,
    ordered_by_key    boolean NOT NULL DEFAULT false,
    UNIQUE (topic_id, name)
);

-- Per (topic, partition, group): everything below floor is done; nothing at or above
-- next_offset has ever been leased; no pending lease_state row becomes visible before check_at.
CREATE TABLE {schema}.lease_cursors (
    topic_id    bigint NOT NULL,
    partition   int    NOT NULL,
    group_id    bigint NOT NULL REFERENCES {schema}.lease_groups (id) ON DELETE CASCADE,
    floor       bigint NOT NULL DEFAULT 0,
    next_offset bigint NOT NULL DEFAULT 0,
    check_at    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (topic_id, partition, group_id)
) WITH (fillfactor = 50);

-- Rows only for records in [floor, next_offset) with state, plus dead letters.
-- state: 1 leased, 2 released/delayed, 3 acked, 4 dead-lettered.
CREATE TABLE {schema}.lease_state (
    topic_id        bigint   NOT NULL,
    partition       int      NOT NULL,
    group_id        bigint   NOT NULL,
    "offset"        bigint   NOT NULL,
    state           smallint NOT NULL,
    nonce           bigint   NOT NULL,
    delivery_count  int      NOT NULL,
    visible_at      bigint   NOT NULL,
    first_leased_at bigint,
    PRIMARY KEY (topic_id, partition, group_id, "offset")
) WITH (fillfactor = 50);
"#;

/// Committed offsets keep the leader epoch (KIP-320), and metadata becomes bytea holding the
/// UTF-8 bytes of the string, since text cannot hold U+0000. Existing rows keep their value
/// (`convert_to` gives the same UTF-8 bytes) and get a NULL (unknown) epoch.
const V2: &str = r#"
ALTER TABLE {schema}.consumer_offsets ADD COLUMN IF NOT EXISTS leader_epoch int;
ALTER TABLE {schema}.consumer_offsets
    ALTER COLUMN metadata TYPE bytea USING convert_to(metadata, 'UTF8');
"#;

/// A batch per row: `batches.data` holds the stored Kafka record batch (format v2, base
/// offset set), stored out of line without compression (batches a producer compressed stay
/// compressed; compressing the others again would cost CPU on every append). `delays` holds
/// the not-before time of the few records that have one, for counting and skipping delayed
/// records without decoding batches. Rows of `records` written before are turned into batch
/// data at start-up (`legacy::convert_records`); the table stays for that and is otherwise
/// unused.
const V3: &str = r#"
ALTER TABLE {schema}.batches ADD COLUMN IF NOT EXISTS data bytea;
ALTER TABLE {schema}.batches ALTER COLUMN data SET STORAGE EXTERNAL;
CREATE TABLE IF NOT EXISTS {schema}.delays (
    topic_id      bigint NOT NULL,
    partition     int    NOT NULL,
    "offset"      bigint NOT NULL,
    not_before_ms bigint NOT NULL,
    PRIMARY KEY (topic_id, partition, "offset")
);
"#;

/// Validates a schema name: 1-48 characters of `[a-z0-9_]`, not starting with a digit.
pub(crate) fn validate_schema_name(name: &str) -> Result<(), PgError> {
    let ok = !name.is_empty()
        && name.len() <= 48
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with("pg_");
    if ok {
        Ok(())
    } else {
        Err(PgError::Config(format!(
            "schema name {name:?} must be 1-48 characters of [a-z0-9_], not start with a digit or pg_"
        )))
    }
}

/// The schema name quoted as an SQL identifier (the name is validated, so this is exact).
pub(crate) fn quoted(schema: &str) -> String {
    format!("\"{}\"", schema.replace('"', "\"\""))
}

/// A stable 64-bit key for the schema's advisory lock.
pub(crate) fn lock_key(schema: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in b"store-postgres:".iter().chain(schema.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

/// Creates the schema if needed and applies every missing migration, in one transaction that
/// holds an advisory lock, so brokers starting together apply each migration exactly once.
/// A schema newer than [`SCHEMA_VERSION`] is `SchemaTooNew` and changes nothing.
pub(crate) async fn migrate(client: &mut Client, schema: &str) -> Result<i32, PgError> {
    let q = quoted(schema);
    let tx = client.transaction().await.map_err(pg)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock_key(schema)])
        .await
        .map_err(pg)?;
    let rights = tx
        .query_one(
            "SELECT current_user::text, current_database()::text,
                    has_database_privilege(current_database(), 'CREATE'),
                    EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1),
                    CASE WHEN EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)
                         THEN has_schema_privilege($1, 'USAGE') AND has_schema_privilege($1, 'CREATE')
                         ELSE false END",
            &[&schema],
        )
        .await
        .map_err(pg)?;
    let (role, database): (String, String) = (rights.get(0), rights.get(1));
    let (may_create_schema, exists, may_use_schema): (bool, bool, bool) =
        (rights.get(2), rights.get(3), rights.get(4));
    if !exists && !may_create_schema {
        return Err(PgError::Privileges(format!(
            "role {role:?} may not create schema {schema:?} in database {database:?}: run \
             `GRANT CREATE ON DATABASE {} TO {};` or create the schema beforehand and run \
             `GRANT USAGE, CREATE ON SCHEMA {q} TO {};`",
            quoted(&database),
            quoted(&role),
            quoted(&role)
        )));
    }
    if exists && !may_use_schema {
        return Err(PgError::Privileges(format!(
            "role {role:?} lacks rights on schema {schema:?} in database {database:?}: run \
             `GRANT USAGE, CREATE ON SCHEMA {q} TO {};` (and make the role the owner of its \
             tables, or the schema's owner, so migrations can alter them)",
            quoted(&role)
        )));
    }
    if !exists {
        // Not `CREATE SCHEMA IF NOT EXISTS`: that needs CREATE on the database even when the
        // schema exists, which a role given only rights on the schema does not have.
        tx.batch_execute(&format!("CREATE SCHEMA {q}"))
            .await
            .map_err(pg)?;
    }
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {q}.schema_migrations (
             version int PRIMARY KEY,
             description text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now());"
    ))
    .await
    .map_err(pg)?;
    let current: i32 = tx
        .query_one(
            &format!("SELECT coalesce(max(version), 0) FROM {q}.schema_migrations"),
            &[],
        )
        .await
        .map_err(pg)?
        .get(0);
    if current > SCHEMA_VERSION {
        return Err(PgError::SchemaTooNew {
            schema: schema.to_string(),
            found: current,
            supported: SCHEMA_VERSION,
        });
    }
    for (i, (description, sql)) in MIGRATIONS.iter().enumerate() {
        let version = i as i32 + 1;
        if version <= current {
            continue;
        }
        tracing::info!(schema, version, description, "applying migration");
        tx.batch_execute(&sql.replace("{schema}", &q))
            .await
            .map_err(pg)?;
        tx.execute(
            &format!("INSERT INTO {q}.schema_migrations (version, description) VALUES ($1, $2)"),
            &[&version, description],
        )
        .await
        .map_err(pg)?;
    }
    tx.commit().await.map_err(pg)?;
    Ok(SCHEMA_VERSION)
}

fn pg(e: tokio_postgres::Error) -> PgError {
    PgError::Database(db_err(e))
}
