//! Shell completions (issue 17, item 4): generated for each shell; bash's script is valid bash.

use std::process::Command;

use crate::harness::{BIN, jobpulse};

#[test]
fn completions_are_generated_and_bash_accepts_them() -> anyhow::Result<()> {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(BIN).args(["completions", shell]).output()?;
        assert!(
            out.status.success(),
            "{shell}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let script = String::from_utf8(out.stdout)?;
        for word in ["jobpulse", "submit", "watch", "log-format"] {
            assert!(script.contains(word), "{shell} completions lack {word}");
        }
        if shell == "bash" {
            let dir = tempfile::tempdir()?;
            let file = dir.path().join("jobpulse.bash");
            std::fs::write(&file, &script)?;
            let check = Command::new("bash").arg("-n").arg(&file).output()?;
            assert!(
                check.status.success(),
                "bash -n: {}",
                String::from_utf8_lossy(&check.stderr)
            );
        }
    }
    let out = Command::new(BIN).args(["completions", "tcsh"]).output()?;
    assert!(!out.status.success(), "an unknown shell was accepted");
    Ok(())
}

fn help(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(BIN).args(args).arg("--help").output()?;
    anyhow::ensure!(out.status.success(), "{args:?} --help failed");
    Ok(String::from_utf8(out.stdout)?)
}

/// Server settings appear on the server commands only; the client commands have theirs.
#[test]
fn server_flags_are_not_offered_to_client_commands() -> anyhow::Result<()> {
    for client in [
        &["submit"][..],
        &["submit", "video"],
        &["watch"],
        &["watch", "job"],
    ] {
        let text = help(client)?;
        for server_only in [
            "--database-url",
            "--redis-url",
            "--jwt-secret",
            "--data-dir",
            "--port",
        ] {
            assert!(
                !text.contains(server_only),
                "{client:?} offers {server_only}:\n{text}"
            );
        }
        for own in ["--url", "--token", "--ca-cert", "--give-up-after"] {
            assert!(text.contains(own), "{client:?} lacks {own}:\n{text}");
        }
    }
    for server in [
        &["up"][..],
        &["serve"],
        &["worker"],
        &["migrate"],
        &["tenant", "add"],
        &["config"],
    ] {
        let text = help(server)?;
        assert!(
            text.contains("--database-url") && text.contains("--lease"),
            "{server:?}:\n{text}"
        );
        assert!(!text.contains("--ca-cert"), "{server:?} offers --ca-cert");
    }
    // Rejected, not ignored: a server flag on a client command is an error.
    let out = Command::new(BIN)
        .args(["watch", "video", "1", "--database-url", "postgres://x"])
        .output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--database-url"));
    Ok(())
}

/// `jobpulse config`: every setting with its source, flag > env > file > default, secrets
/// redacted; unknown file keys refused by name.
#[test]
fn config_reports_values_sources_and_redacts_secrets() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("jobpulse.toml");
    std::fs::write(
        &file,
        "port = 7000\nlease = \"90min\"\nkey_prefix = \"fromfile\"\nconcurrency = 3\n\
         aws_secret_access_key = \"file-aws-secret\"\nffmpeg = \"/opt/ffmpeg\"\n",
    )?;
    let out = jobpulse()
        .args(["config", "--config"])
        .arg(&file)
        .args(["--port", "7100"])
        .env("JOBPULSE_KEY_PREFIX", "fromenv")
        .env(
            "JOBPULSE_JWT_SECRET",
            "env-jwt-secret-env-jwt-secret-env-jwt",
        )
        .env("DATABASE_URL", "postgres://jp:pgpass@db:5432/jp")
        .output()?;
    let text = String::from_utf8(out.stdout)?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |key: &str| -> String {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        line("port").contains("7100") && line("port").ends_with("# flag"),
        "{text}"
    );
    assert!(
        line("key_prefix").contains("fromenv") && line("key_prefix").contains("# env"),
        "{text}"
    );
    assert!(
        line("lease").contains("1h 30m") && line("lease").ends_with("# file"),
        "{text}"
    );
    assert!(
        line("concurrency").contains('3') && line("ffmpeg").contains("/opt/ffmpeg"),
        "{text}"
    );
    assert!(
        line("bind").contains("127.0.0.1") && line("bind").ends_with("# default"),
        "{text}"
    );
    assert!(
        line("database_url").contains("postgres://jp:***@db:5432/jp"),
        "{text}"
    );
    for secret in ["env-jwt-secret", "pgpass", "file-aws-secret"] {
        assert!(!text.contains(secret), "{secret} shown:\n{text}");
    }
    assert!(line("jwt_secret").contains("<redacted>"), "{text}");

    // A typo in the file: refused, naming the key.
    std::fs::write(&file, "port = 7000\nconcurency = 3\n")?;
    let out = jobpulse()
        .args(["config", "--config"])
        .arg(&file)
        .output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("concurency"), "{err}");
    Ok(())
}
