//! The words `jobpulse watch` adds for liveness and retries (docs/contract.md §3a, §3b) — the
//! same as the dashboard's (`crates/jobpulse-api/assets/format.js`): "no sign of the worker for
//! 1 min", "attempt 2 of 3 — retrying in 20 s", "attempt 2 of 3".

use serde_json::Value;

/// `25 s`, `1 min`, `1 h 5 min`.
fn span(secs: u64) -> String {
    if secs < 60 {
        format!("{secs} s")
    } else if secs < 3600 {
        format!("{} min", secs / 60)
    } else if secs % 3600 < 60 {
        format!("{} h", secs / 3600)
    } else {
        format!("{} h {} min", secs / 3600, (secs % 3600) / 60)
    }
}

/// "no sign of the worker for 1 min" while the answer says `stalled`.
pub(super) fn liveness(body: &Value) -> Option<String> {
    if body["stalled"] != true {
        return None;
    }
    let ago = body["worker_seen_seconds_ago"].as_u64().unwrap_or(0);
    Some(format!("no sign of the worker for {}", span(ago)))
}

/// "attempt 2 of 3 — retrying in 20 s" between attempts (the next one, when it may start, as of
/// `now_ms`), "attempt 2 of 3" while a retry runs; `None` for a first attempt.
pub(super) fn attempt(body: &Value, now_ms: u64) -> Option<String> {
    let attempt = body["attempt"].as_u64()?;
    let of = body["max_attempts"]
        .as_u64()
        .map(|m| format!(" of {m}"))
        .unwrap_or_default();
    match body["status"].as_str() {
        Some("RETRY_WAIT" | "RETRYING") => {
            let when = match body["retry_at"].as_u64() {
                Some(at) if at > now_ms => {
                    format!("retrying in {}", span((at - now_ms).div_ceil(1000)))
                }
                _ => "retrying now".to_owned(),
            };
            Some(format!("attempt {}{of} — {when}", attempt + 1))
        }
        Some("PROCESSING" | "RUNNING") if attempt > 1 => Some(format!("attempt {attempt}{of}")),
        _ => None,
    }
}

/// Milliseconds since the Unix epoch.
pub(super) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_issue_texts() {
        let stalled =
            json!({"status": "PROCESSING", "stalled": true, "worker_seen_seconds_ago": 65});
        assert_eq!(
            liveness(&stalled).as_deref(),
            Some("no sign of the worker for 1 min")
        );
        let alive = json!({"status": "PROCESSING", "stalled": false, "worker_seen_seconds_ago": 2});
        assert_eq!(liveness(&alive), None);
        let wait = json!({"status": "RETRY_WAIT", "attempt": 1, "max_attempts": 3,
                          "retry_at": 1_000_000 + 19_200});
        assert_eq!(
            attempt(&wait, 1_000_000).as_deref(),
            Some("attempt 2 of 3 — retrying in 20 s")
        );
        assert_eq!(
            attempt(&wait, 2_000_000).as_deref(),
            Some("attempt 2 of 3 — retrying now")
        );
        let running = json!({"status": "RUNNING", "attempt": 2, "max_attempts": 3});
        assert_eq!(attempt(&running, 0).as_deref(), Some("attempt 2 of 3"));
        let first = json!({"status": "RUNNING", "attempt": 1, "max_attempts": 3});
        assert_eq!(attempt(&first, 0), None);
        assert_eq!(span(3_900), "1 h 5 min");
    }
}
