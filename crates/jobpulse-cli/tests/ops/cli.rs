//! Shell completions (issue 17, item 4): generated for each shell; bash's script is valid bash.

use std::process::Command;

use crate::harness::BIN;

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
