//! Schema migrations, embedded in the binary.
//!
//! Two directories, `migrations/postgres` and `migrations/sqlite`, hold the same schema in each
//! dialect (`<version>_<name>.sql`, the layout the `sqlx` CLI uses). The files are compiled in
//! with `include_str!` and handed to sqlx's [`Migrator`] at run time, so:
//!
//! - a fresh clone builds without a database and without sqlx's proc macros;
//! - applied versions and checksums live in sqlx's `_sqlx_migrations` table, and on PostgreSQL
//!   the migrator holds an advisory lock, so several processes starting at once migrate safely;
//! - running the migrations again is a no-op, and an edited, already-applied file is refused.
//!
//! Adding a migration: add the file to both directories and a line to each list below (a test
//! checks the lists against the directories). A file starting with `-- no-transaction` runs
//! outside sqlx's transaction and manages its own (SQLite table rebuilds).

use std::borrow::Cow;

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

use crate::conn::Dialect;

type Embedded = (i64, &'static str, &'static str);

pub(crate) const POSTGRES: &[Embedded] = &[
    (
        1,
        "init",
        include_str!("../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "ai_claim_order",
        include_str!("../migrations/postgres/0002_ai_claim_order.sql"),
    ),
    (
        3,
        "video_uploads",
        include_str!("../migrations/postgres/0003_video_uploads.sql"),
    ),
    (
        4,
        "enrollment_session",
        include_str!("../migrations/postgres/0004_enrollment_session.sql"),
    ),
    (
        5,
        "job_input_retention",
        include_str!("../migrations/postgres/0005_job_input_retention.sql"),
    ),
    (
        6,
        "ai_claim_heads",
        include_str!("../migrations/postgres/0006_ai_claim_heads.sql"),
    ),
    (
        7,
        "video_retry_fields",
        include_str!("../migrations/postgres/0007_video_retry_fields.sql"),
    ),
    (
        8,
        "webhooks",
        include_str!("../migrations/postgres/0008_webhooks.sql"),
    ),
];

pub(crate) const SQLITE: &[Embedded] = &[
    (
        1,
        "init",
        include_str!("../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "ai_claim_order",
        include_str!("../migrations/sqlite/0002_ai_claim_order.sql"),
    ),
    (
        3,
        "video_uploads",
        include_str!("../migrations/sqlite/0003_video_uploads.sql"),
    ),
    (
        4,
        "enrollment_session",
        include_str!("../migrations/sqlite/0004_enrollment_session.sql"),
    ),
    (
        5,
        "job_input_retention",
        include_str!("../migrations/sqlite/0005_job_input_retention.sql"),
    ),
    (
        6,
        "ai_claim_heads",
        include_str!("../migrations/sqlite/0006_ai_claim_heads.sql"),
    ),
    (
        7,
        "video_retry_fields",
        include_str!("../migrations/sqlite/0007_video_retry_fields.sql"),
    ),
    (
        8,
        "webhooks",
        include_str!("../migrations/sqlite/0008_webhooks.sql"),
    ),
];

pub(crate) fn migrator(dialect: Dialect) -> Migrator {
    let list = match dialect {
        Dialect::Postgres => POSTGRES,
        Dialect::Sqlite => SQLITE,
    };
    Migrator::with_migrations(
        list.iter()
            .map(|(version, name, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*name),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    // sqlx's own marker: the file manages its transaction itself (SQLite
                    // table rebuilds need foreign keys off, which a transaction ignores).
                    sql.starts_with("-- no-transaction"),
                )
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &str) -> Vec<String> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut names: Vec<String> = std::fs::read_dir(path)
            .expect("migrations directory exists")
            .map(|e| {
                e.expect("readable entry")
                    .file_name()
                    .to_string_lossy()
                    .into()
            })
            .collect();
        names.sort();
        names
    }

    #[test]
    fn embedded_lists_match_the_directories() {
        for (dir, list) in [
            ("migrations/postgres", POSTGRES),
            ("migrations/sqlite", SQLITE),
        ] {
            let expected: Vec<String> = list
                .iter()
                .map(|(v, name, _)| format!("{v:04}_{name}.sql"))
                .collect();
            assert_eq!(files(dir), expected, "{dir}");
        }
        let versions = |l: &[Embedded]| l.iter().map(|m| m.0).collect::<Vec<_>>();
        assert_eq!(
            versions(POSTGRES),
            versions(SQLITE),
            "both dialects move together"
        );
    }
}
