//! The product through its HTTP API: upload → steps → READY → playable; import → DONE; restart.

use std::time::{Duration, Instant};

use reqwest::multipart::{Form, Part};
use serde_json::Value;

use crate::harness::{Up, clip, workbook};

async fn json(res: reqwest::Response) -> anyhow::Result<(u16, Value)> {
    let s = res.status().as_u16();
    Ok((s, res.json().await?))
}

/// Polls a progress URL until a terminal status, checking what the front end relies on.
async fn poll_video(up: &Up, id: i64, within: Duration) -> anyhow::Result<Vec<Value>> {
    let until = Instant::now() + within;
    let mut seen: Vec<Value> = Vec::new();
    loop {
        let (s, v) = json(
            up.get(&format!("/api/v1/media/videos/{id}/progress/"))
                .send()
                .await?,
        )
        .await?;
        assert_eq!(s, 200);
        assert_eq!(v["progress"], v["encoding_progress"]);
        if let Some(prev) = seen.last() {
            let rank = |s: &str| match s {
                "UPLOADED" => 0,
                "PROCESSING" | "RETRY_WAIT" => 1,
                _ => 2,
            };
            let (a, b) = (
                prev["status"].as_str().unwrap_or(""),
                v["status"].as_str().unwrap_or(""),
            );
            assert!(rank(b) >= rank(a), "status went back: {a} -> {b}");
            if a == b && prev["attempt"] == v["attempt"] {
                assert!(
                    v["progress"].as_u64() >= prev["progress"].as_u64(),
                    "percent went back within an attempt: {prev} -> {v}"
                );
            }
        }
        match v["status"].as_str() {
            Some("PROCESSING") => {
                let p = v["progress"].as_u64().unwrap_or(0);
                assert!((10..=99).contains(&p), "PROCESSING at {p} %");
            }
            Some("READY") => {
                assert_eq!(v["progress"], 100);
                seen.push(v);
                return Ok(seen);
            }
            Some("FAILED") => anyhow::bail!("the video failed: {v}\n{}", up.logs()),
            Some("UNKNOWN") => {
                anyhow::bail!("UNKNOWN after upload: the read model was not written first")
            }
            _ => {}
        }
        seen.push(v);
        assert!(
            Instant::now() < until,
            "not READY in time; last {:?}",
            seen.last()
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_runs_the_whole_product_and_keeps_it_across_a_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let mut up = Up::start(&data)?;
    let (s, health) = json(up.get("/readyz").send().await?).await?;
    assert_eq!(s, 200, "{health}");

    // Upload a clip the way the browser does.
    let clip = clip(dir.path(), 6.0, 640, 360).await?;
    let form = Form::new()
        .part(
            "file",
            Part::bytes(std::fs::read(&clip)?).file_name("lesson.mp4"),
        )
        .text("title", "Lesson 1")
        .text("session_id", "1");
    let (s, created) = json(
        up.post("/api/v1/media/videos/")
            .multipart(form)
            .send()
            .await?,
    )
    .await?;
    assert_eq!(s, 201, "{created}");
    let id = created["id"].as_i64().expect("id");
    let seen = poll_video(&up, id, Duration::from_secs(120)).await?;
    let ready = seen.last().expect("READY");
    assert_eq!(
        ready["hls_path"],
        format!("tenants/1/video/hls/{id}/master.m3u8")
    );
    assert!(
        ready["duration"]
            .as_u64()
            .is_some_and(|d| (5..=7).contains(&d))
    );

    // The record has a signed, playable URL; the playlist and a segment are served.
    let (_, rec) = json(
        up.get(&format!("/api/v1/media/videos/{id}/"))
            .send()
            .await?,
    )
    .await?;
    let hls = rec["hls_url"].as_str().expect("hls_url on READY");
    assert!(
        hls.starts_with(&format!("{}/media/s/", up.base)),
        "absolute: {hls}"
    );
    let master = up.http.get(hls).send().await?.text().await?;
    assert!(master.contains("#EXT-X-STREAM-INF"), "{master}");
    let variant = master
        .lines()
        .find(|l| l.ends_with(".m3u8"))
        .expect("a variant playlist");
    let vurl = hls.replace("master.m3u8", variant);
    let playlist = up.http.get(&vurl).send().await?.text().await?;
    let seg = playlist
        .lines()
        .find(|l| l.ends_with(".ts"))
        .expect("a segment");
    let prefix = vurl.rsplit_once('/').expect("path").0;
    let seg = up.http.get(format!("{prefix}/{seg}")).send().await?;
    assert_eq!(seg.status(), 200);
    assert!(seg.bytes().await?.len() > 1000);

    // An excel import into the demo lecture.
    let wb = workbook(dir.path())?;
    let form = Form::new()
        .text("job_type", "excel_parsing")
        .text("lecture_id", "1")
        .part(
            "file",
            Part::bytes(std::fs::read(&wb)?).file_name("students.xlsx"),
        );
    let (s, job) = json(up.post("/api/v1/jobs/").multipart(form).send().await?).await?;
    assert_eq!(s, 201, "{job}");
    let jid = job["job_id"].as_str().expect("job id").to_owned();
    let until = Instant::now() + Duration::from_secs(60);
    let done = loop {
        let (_, v) = json(
            up.get(&format!("/api/v1/jobs/{jid}/progress/"))
                .send()
                .await?,
        )
        .await?;
        match v["status"].as_str() {
            Some("DONE") => break v,
            Some("PENDING" | "RUNNING" | "RETRYING") => {}
            other => anyhow::bail!("import ended {other:?}: {v}"),
        }
        assert!(Instant::now() < until, "import not DONE in time");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(done.get("error_message").is_none(), "{done}");
    assert_eq!(done["result"]["created"], 20);
    assert_eq!(
        done["result"]["duplicates"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(done["result"]["failed"].as_array().map(Vec::len), Some(2));
    // The DONE answer shows staff the initial passwords (sealed in the read model, opened by
    // the API), the same as the full result.
    assert_eq!(
        done["result"]["credentials"].as_array().map(Vec::len),
        Some(20),
        "{done}"
    );
    let (s, full) = json(
        up.get(&format!("/api/v1/jobs/{jid}/result/"))
            .send()
            .await?,
    )
    .await?;
    assert_eq!(s, 200);
    assert_eq!(full["credentials"].as_array().map(Vec::len), Some(20));
    assert_eq!(full["credentials"], done["result"]["credentials"]);

    // SIGTERM stops it cleanly; a restart rebuilds the in-process read model from SQLite and
    // keeps the token secret.
    assert!(
        up.terminate(Duration::from_secs(20))?,
        "up did not exit cleanly:\n{}",
        up.logs()
    );
    let up2 = Up::start(&data)?;
    let (_, v) = json(
        up2.http
            .get(format!("{}/api/v1/media/videos/{id}/progress/", up2.base))
            .bearer_auth(&up.token)
            .send()
            .await?,
    )
    .await?;
    assert_eq!(v["status"], "READY", "{v}");
    Ok(())
}
