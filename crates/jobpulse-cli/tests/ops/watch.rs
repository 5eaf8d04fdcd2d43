//! `submit --watch` and `watch` without a terminal (issue 17, item 4): a line per change of
//! state, a final line with a playable URL, and a clear give-up on an id nobody knows.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::{clip, jobpulse};
use crate::procs::Proc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_watch_in_a_pipe_prints_states_and_a_playable_url() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let clip = clip(dir.path(), 3.0, 320, 240).await?;
    let up = Proc::up(&dir.path().join("data"), Stdio::null(), &[], &[])?;
    let (base, token) = (up.base.clone(), up.token.clone());
    let out = tokio::task::spawn_blocking(move || {
        jobpulse()
            .args(["submit", "video"])
            .arg(&clip)
            .args(["--watch", "--url", &base])
            .env("JOBPULSE_TOKEN", token)
            .output()
    })
    .await??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("video ") && lines[0].ends_with(" uploaded"),
        "{stdout}"
    );
    // At least one state before the end, each line a new state or step.
    let states = &lines[1..lines.len() - 1];
    assert!(!states.is_empty(), "no state lines: {stdout}");
    for pair in states.windows(2) {
        assert_ne!(pair[0], pair[1], "a line repeated: {stdout}");
    }
    let last = lines[lines.len() - 1];
    let url = last
        .strip_prefix("READY: ")
        .unwrap_or_else(|| panic!("the last line is not READY with a URL: {stdout}"));
    assert!(
        url.starts_with("http://") && url.contains(".m3u8"),
        "{last}"
    );
    // Playable as is: no token needed.
    let res = reqwest::get(url).await?;
    assert_eq!(res.status(), 200, "{url}");
    assert!(res.text().await?.starts_with("#EXTM3U"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watching_an_unknown_id_gives_up_with_a_clear_message() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let up = Proc::up(&dir.path().join("data"), Stdio::null(), &[], &[])?;
    let (base, token) = (up.base.clone(), up.token.clone());
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        jobpulse()
            .args([
                "watch",
                "video",
                "987654",
                "--give-up-after",
                "3s",
                "--url",
                &base,
            ])
            .env("JOBPULSE_TOKEN", token)
            .output()
    })
    .await??;
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "watching an unknown id succeeded");
    assert!(
        err.contains("gave up after 3s") && err.contains("knows nothing"),
        "{err}"
    );
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(30),
        "gave up after {took:?}"
    );
    Ok(())
}
