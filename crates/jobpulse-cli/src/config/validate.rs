//! The checks a merged [`Config`] must pass before a process uses it (ranges, settings that
//! exclude each other).

use std::time::Duration;

use anyhow::bail;

use super::table::Config;

/// Refuses a merged configuration that is out of range or contradicts itself, naming the
/// setting.
pub(super) fn validate(config: &Config) -> anyhow::Result<()> {
    if config.upload_retention.0 < Duration::from_secs(3 * 3600) {
        bail!(
            "upload_retention: at least 3h (upload URLs live 2 h; an upload still running \
             must not be removed)"
        );
    }
    for (name, d) in [
        ("live_ttl", Some(config.live_ttl)),
        ("terminal_retention", config.terminal_retention),
        ("lease", config.lease),
    ] {
        if d.is_some_and(|d| d.0 > Duration::from_secs(366 * 86_400)) {
            bail!("{name}: at most 366d");
        }
    }
    if config.concurrency == Some(0) {
        bail!("concurrency: at least 1");
    }
    if config.redis_url.is_some() && config.redis_cluster_nodes.is_some() {
        bail!(
            "redis_url and redis_cluster_nodes are both set: give REDIS_URL for one Redis \
             server or JOBPULSE_REDIS_CLUSTER_NODES for a Redis Cluster, not both"
        );
    }
    if let Some(nodes) = &config.redis_cluster_nodes {
        jobpulse_store::RedisTarget::cluster_from_list(nodes)
            .map_err(|e| anyhow::anyhow!("redis_cluster_nodes: {e}"))?;
    }
    config
        .media_limits()
        .validate()
        .map_err(|e| anyhow::anyhow!(e))?;
    if !(config.transcode_timeout_factor.is_finite() && config.transcode_timeout_factor > 0.0) {
        bail!("transcode_timeout_factor: a number above 0 (e.g. 2 or 1.5)");
    }
    if config.transcode_timeout_max.0 < Duration::from_secs(1) {
        bail!("transcode_timeout_max: at least 1s");
    }
    if config.ffmpeg_threads == 0 || config.ffmpeg_threads > 64 {
        bail!("ffmpeg_threads: 1 to 64");
    }
    if config.ffmpeg_memory_limit != 0 && config.ffmpeg_memory_limit < 256 * 1024 * 1024 {
        bail!(
            "ffmpeg_memory_limit: 0 (off) or at least 268435456 (256 MiB; ffmpeg needs about \
             400 MiB for a small clip)"
        );
    }

    Ok(())
}
