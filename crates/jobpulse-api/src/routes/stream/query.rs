//! The stream's query string: the tasks to watch (or `all=true`), and for `EventSource` clients
//! the token and the position to resume after.

use jobpulse_domain::{JobId, TaskId, VideoId};

use crate::error::ApiError;
use crate::hub::Watch;
use crate::routes::batch::MAX_IDS;

pub(super) struct Query {
    pub(super) watch: Watch,
    pub(super) token: Option<String>,
    pub(super) last_event_id: Option<String>,
}

pub(super) fn parse(raw: Option<&str>) -> Result<Query, ApiError> {
    let mut ids = Vec::new();
    let mut all = false;
    let mut token = None;
    let mut last_event_id = None;
    for pair in raw.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "videos" | "jobs" => {
                for s in v.replace("%2C", ",").split(',').filter(|s| !s.is_empty()) {
                    ids.push(if k == "videos" {
                        TaskId::Video(
                            VideoId::parse(s)
                                .map_err(|e| ApiError::BadRequest(format!("videos: {s:?}: {e}")))?,
                        )
                    } else {
                        TaskId::Job(
                            JobId::parse(s)
                                .map_err(|e| ApiError::BadRequest(format!("jobs: {s:?}: {e}")))?,
                        )
                    });
                    if ids.len() > MAX_IDS {
                        return Err(ApiError::BadRequest(format!(
                            "at most {MAX_IDS} ids per stream; use all=true to watch a tenant"
                        )));
                    }
                }
            }
            "all" => all = matches!(v, "true" | "1"),
            "access_token" => token = Some(v.to_owned()),
            "last_event_id" => last_event_id = Some(v.to_owned()),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter {:?}; use videos=, jobs=, all=true",
                    other.chars().take(40).collect::<String>()
                )));
            }
        }
    }
    if all && !ids.is_empty() {
        return Err(ApiError::BadRequest(
            "use either all=true or a list of ids".into(),
        ));
    }
    if !all && ids.is_empty() {
        return Err(ApiError::BadRequest(
            "say what to watch: videos=…, jobs=… or all=true".into(),
        ));
    }
    ids.sort_unstable();
    ids.dedup();
    let watch = if all {
        Watch::All
    } else {
        Watch::Tasks(ids.into())
    };
    Ok(Query {
        watch,
        token,
        last_event_id,
    })
}
