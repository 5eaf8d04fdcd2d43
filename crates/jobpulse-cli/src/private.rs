//! What jobpulse keeps on disk is its user's alone (issue 15 finding 11): the data dir holds
//! students' names and phone numbers (the SQLite database, uploaded spreadsheets), sealed
//! initial passwords and the key material (`jwt-secret`).
//!
//! - The server commands set the process's umask to `077` ([`restrict_umask`]) before anything
//!   is created, so every file they — and the ffmpeg they start — create is `0600` and every
//!   directory `0700`: the SQLite database (created `0600` by `jobpulse_db` itself too) and its
//!   `-wal`/`-shm` files (SQLite gives them the database's mode), media written by the file
//!   storage, the upload spool, work files.
//! - At start, what an older build left more open is tightened, each change a log line: the data
//!   dir, the database files, the media root, the spool and the work dir ([`secure_data_dir`]).
//!   Files further down the media tree keep their mode, but nobody else can reach them through a
//!   `0700` directory.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, bail};

use crate::config::Settings;

/// Mode of the directories jobpulse creates or tightens.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the files jobpulse tightens.
pub const FILE_MODE: u32 = 0o600;

/// Makes everything this process creates from now on private to its user (umask `077`).
pub fn restrict_umask() {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
}

/// Creates `dir` (and its parents) `0700`, or tightens an existing one to `0700`; a path that
/// exists but is not a directory is an error that says so (rather than the OS's "File exists").
pub fn dir(dir: &Path, what: &str) -> anyhow::Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => tighten(dir, what, m.permissions().mode(), DIR_MODE),
        Ok(_) => bail!("the {what} {} exists but is not a directory", dir.display()),
        Err(_) => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)
            .with_context(|| format!("creating the {what} {}", dir.display())),
    }
}

/// Tightens an existing file to `0600`; a missing one is left missing.
pub fn file(path: &Path, what: &str) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => tighten(path, what, m.permissions().mode(), FILE_MODE),
        Ok(_) | Err(_) => Ok(()),
    }
}

/// Removes group and other permissions beyond `mode`, with a log line when that changed
/// anything.
fn tighten(path: &Path, what: &str, current: u32, mode: u32) -> anyhow::Result<()> {
    if current & 0o077 == 0 {
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("making the {what} {} private", path.display()))?;
    tracing::warn!(
        path = %path.display(),
        from = %format!("{:o}", current & 0o7777),
        to = %format!("{mode:o}"),
        "{what} was readable by other users; made private to jobpulse's user"
    );
    Ok(())
}

/// Tightens what the data dir holds (module docs); creates the data dir if missing.
pub fn secure_data_dir(settings: &Settings) -> anyhow::Result<()> {
    let data = &settings.data_dir;
    dir(data, "data dir")?;
    if settings.database_url.is_none() {
        let db = data.join("jobpulse.db");
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut name = db.clone().into_os_string();
            name.push(suffix);
            file(Path::new(&name), "database file")?;
        }
    }
    file(&settings.secret_file(), "secret file")?;
    for (sub, what) in [
        ("media", "media dir"),
        ("spool", "upload spool"),
        ("work", "work dir"),
    ] {
        let path = data.join(sub);
        if path.exists() {
            dir(&path, what)?;
        }
    }
    Ok(())
}
