//! The deployment files (issue 17, items 5 and 6): the systemd units pass `systemd-analyze
//! verify` without a warning and are hardened; the env file example names only real settings;
//! the Prometheus rules pass `promtool check rules` and fire in `promtool test rules`.
//!
//! `systemd-analyze` (package systemd) and `promtool` (package prometheus) must be installed —
//! scripts/test installs them. A missing tool fails the test with what to install; it is never
//! skipped.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::BIN;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// Runs a tool; panics with what to install when it is missing.
fn run(tool: &str, package: &str, args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new(tool)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {tool} ({e}): install the `{package}` package (scripts/test does)")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

const UNITS: [&str; 2] = ["jobpulse-serve.service", "jobpulse-worker@.service"];
const INSTALLED_BIN: &str = "/usr/local/bin/jobpulse";

#[test]
fn systemd_units_verify_cleanly_and_are_hardened() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    for unit in UNITS {
        let text = std::fs::read_to_string(deploy().join("systemd").join(unit))?;
        // The units name the installed binary; here it is the one just built, so that
        // `verify` can check it is executable (nothing else is changed).
        assert!(
            text.contains(&format!("ExecStart={INSTALLED_BIN} ")),
            "{unit}"
        );
        for key in [
            "User=jobpulse",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "PrivateTmp=yes",
            "CapabilityBoundingSet=\n",
            "SystemCallFilter=@system-service",
        ] {
            assert!(text.contains(key), "{unit} lacks {key:?}");
        }
        std::fs::write(tmp.path().join(unit), text.replace(INSTALLED_BIN, BIN))?;
    }
    let instances = [
        "jobpulse-serve.service",
        "jobpulse-worker@video.service",
        "jobpulse-worker@ai.service",
    ];
    let mut args = vec!["verify", "--man=no"];
    args.extend(instances);
    let (ok, out) = run("systemd-analyze", "systemd", &args, tmp.path());
    // `verify` exits 0 on unknown keys and bad values: any output is a finding.
    assert!(
        ok && out.trim().is_empty(),
        "systemd-analyze verify:\n{out}"
    );
    for unit in instances {
        // Exposure 0 (locked down) … 10 (unprotected); these units score about 1.4.
        let (ok, out) = run(
            "systemd-analyze",
            "systemd",
            &["security", "--offline=yes", "--threshold=20", unit],
            tmp.path(),
        );
        assert!(ok, "{unit} is not hardened enough:\n{out}");
    }
    // The command lines exist: each ExecStart's arguments parse (`--help` stops before running).
    for (unit, instance) in [
        ("jobpulse-serve.service", ""),
        ("jobpulse-worker@.service", "video"),
        ("jobpulse-worker@.service", "ai"),
    ] {
        let text = std::fs::read_to_string(deploy().join("systemd").join(unit))?;
        for line in text.lines().filter(|l| l.starts_with("ExecStart")) {
            let cmd = line.split_once(INSTALLED_BIN).map_or("", |(_, c)| c);
            let args: Vec<String> = cmd
                .replace("%i", instance)
                .split_whitespace()
                .map(str::to_owned)
                .chain(["--help".to_owned()])
                .collect();
            let out = Command::new(BIN).args(&args).output()?;
            assert!(
                out.status.success(),
                "{unit}: `jobpulse {}` does not parse: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(())
}

/// Every `NAME=` of the env file example (commented or not) is a setting the binary reads.
#[test]
fn the_env_file_example_names_only_real_settings() -> anyhow::Result<()> {
    let example = std::fs::read_to_string(deploy().join("jobpulse.env.example"))?;
    let mut help = String::new();
    for args in [&["serve", "--help"][..], &["worker", "--help"][..]] {
        let out = Command::new(BIN).args(args).output()?;
        assert!(out.status.success());
        help.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    // Read outside clap: the log filter.
    let outside_clap = ["RUST_LOG"];
    let mut names = 0;
    for line in example.lines() {
        let line = line.trim_start_matches('#');
        let Some((name, _)) = line.split_once('=') else {
            continue;
        };
        if name.is_empty() || !name.bytes().all(|c| c.is_ascii_uppercase() || c == b'_') {
            continue;
        }
        names += 1;
        assert!(
            outside_clap.contains(&name) || help.contains(&format!("[env: {name}")),
            "{name} in jobpulse.env.example is not a setting of `serve` or `worker`"
        );
    }
    assert!(names >= 15, "only {names} settings in the example");
    Ok(())
}

#[test]
fn prometheus_rules_are_valid_and_fire() {
    let dir = deploy().join("prometheus");
    let (ok, out) = run(
        "promtool",
        "prometheus",
        &["check", "rules", "alerts.yml"],
        &dir,
    );
    assert!(ok, "promtool check rules:\n{out}");
    let (ok, out) = run(
        "promtool",
        "prometheus",
        &["test", "rules", "alerts.test.yml"],
        &dir,
    );
    assert!(ok, "promtool test rules:\n{out}");
}
