//! Files: the config file (parsed, unknown keys refused), the private data dir and the HS256
//! secret `jobpulse up` generates into it.

use std::path::Path;

use anyhow::Context;

use super::table::FileConfig;

/// Creates `dir` private (`0700`) if needed, or makes an existing one private (see
/// [`crate::private`]); a path that exists but is not a directory is an error that says so.
pub fn ensure_dir(dir: &Path, what: &str) -> anyhow::Result<()> {
    crate::private::dir(dir, what)
}

/// Parses a config file; an unknown key is an error naming it.
pub fn parse_file(text: &str) -> anyhow::Result<FileConfig> {
    toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))
}

pub(super) fn load_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    parse_file(&text).with_context(|| format!("config file {}", path.display()))
}

pub(super) fn generate_secret(file: &Path) -> anyhow::Result<String> {
    use rand::RngExt;
    if let Some(dir) = file.parent() {
        ensure_dir(dir, "data dir")?;
    }
    let mut rng = rand::rng();
    let secret: String = (0..48)
        .map(|_| {
            const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
            char::from(CHARS[rng.random_range(0..CHARS.len())])
        })
        .collect();
    write_private(file, &secret)?;
    Ok(secret)
}

fn write_private(file: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(file)
        .with_context(|| format!("creating {}", file.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}
