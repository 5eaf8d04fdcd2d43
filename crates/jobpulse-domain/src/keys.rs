//! Redis key naming. Keys are built only here, only from validated ids.
//!
//! Layout (prefix `jp` by default):
//!
//! | key | holds |
//! |---|---|
//! | `jp:{t3}:v:321` | video 321 of tenant 3 (a hash: fence, rev, state) |
//! | `jp:{t3}:j:a1b2` | job a1b2 of tenant 3 |
//! | `jp:{t3}:events` | tenant 3's recent changes (a capped stream, for SSE resume) |
//! | `jp:changes` | pub/sub channel announcing every applied change |
//! | `jp:sentinel` | written at start-up; its absence means Redis lost its data |
//!
//! `{t3}` is a Redis Cluster hash tag: all of a tenant's keys share one slot, so a batch read of
//! many tasks of one tenant is a single round trip even on a cluster, and the write script can
//! append to the tenant's event stream atomically. The price: one very large tenant cannot be
//! spread over several shards.
//!
//! The old system's keys (`tenant:{tid}:video:{vid}:status|progress`, `tenant:{tid}:job:{jid}:…`)
//! are only ever read, and only when the migration read is switched on.

use crate::{TaskId, TaskKey, TenantId};

/// A validated key prefix: `[a-z0-9_.-]{1,48}`, so tests can use one per test.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeySpace {
    prefix: String,
}

/// A key prefix outside `[a-z0-9_.-]{1,48}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key prefix must be 1 to 48 characters of a-z, 0-9, '_', '.' or '-'")]
pub struct BadPrefix;

impl KeySpace {
    pub fn new(prefix: &str) -> Result<Self, BadPrefix> {
        let ok = (1..=48).contains(&prefix.len())
            && prefix.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
            });
        if ok {
            Ok(Self {
                prefix: prefix.to_owned(),
            })
        } else {
            Err(BadPrefix)
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn record(&self, key: &TaskKey) -> String {
        match &key.task {
            TaskId::Video(v) => format!("{}:{{t{}}}:v:{}", self.prefix, key.tenant, v),
            TaskId::Job(j) => format!("{}:{{t{}}}:j:{}", self.prefix, key.tenant, j),
        }
    }

    pub fn tenant_events(&self, tenant: TenantId) -> String {
        format!("{}:{{t{}}}:events", self.prefix, tenant)
    }

    /// A tenant's own change channel, in its hash tag: on a Redis Cluster the write scripts
    /// `SPUBLISH` there (a script may only publish to a shard channel of its keys' slot).
    pub fn tenant_changes_channel(&self, tenant: TenantId) -> String {
        format!("{}:{{t{}}}:changes", self.prefix, tenant)
    }

    pub fn changes_channel(&self) -> String {
        format!("{}:changes", self.prefix)
    }

    pub fn sentinel(&self) -> String {
        format!("{}:sentinel", self.prefix)
    }

    /// Pattern matching every record key, for scans (repair, tests).
    pub fn record_pattern(&self) -> String {
        format!("{}:{{t*}}:[vj]:*", self.prefix)
    }

    /// Parses a record key built by [`KeySpace::record`] back into its task.
    pub fn parse_record(&self, key: &str) -> Option<TaskKey> {
        let rest = key.strip_prefix(&self.prefix)?.strip_prefix(":{t")?;
        let (tenant, rest) = rest.split_once("}:")?;
        let tenant = TenantId::parse(tenant).ok()?;
        let (kind, id) = rest.split_once(':')?;
        let task = match kind {
            "v" => TaskId::Video(crate::VideoId::parse(id).ok()?),
            "j" => TaskId::Job(crate::JobId::parse(id).ok()?),
            _ => return None,
        };
        Some(TaskKey { tenant, task })
    }
}

/// The old system's status and progress keys for a task (read-only, for migration).
pub fn legacy_keys(key: &TaskKey) -> (String, String) {
    let base = match &key.task {
        TaskId::Video(v) => format!("tenant:{}:video:{}", key.tenant, v),
        TaskId::Job(j) => format!("tenant:{}:job:{}", key.tenant, j),
    };
    (format!("{base}:status"), format!("{base}:progress"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{JobId, VideoId};

    #[test]
    fn keys_share_the_tenant_slot_and_round_trip() {
        let ks = KeySpace::new("jp").expect("valid");
        let t = TenantId::new(3).expect("valid");
        let v = TaskKey::video(t, VideoId::new(321).expect("valid"));
        let j = TaskKey::job(t, JobId::parse("a1b2").expect("valid"));
        assert_eq!(ks.record(&v), "jp:{t3}:v:321");
        assert_eq!(ks.record(&j), "jp:{t3}:j:a1b2");
        assert_eq!(ks.tenant_events(t), "jp:{t3}:events");
        assert_eq!(ks.tenant_changes_channel(t), "jp:{t3}:changes");
        assert_eq!(ks.parse_record(&ks.record(&v)), Some(v.clone()));
        assert_eq!(ks.parse_record(&ks.record(&j)), Some(j));
        assert_eq!(ks.parse_record("jp:{t3}:x:1"), None);
        assert_eq!(
            legacy_keys(&v),
            (
                "tenant:3:video:321:status".to_owned(),
                "tenant:3:video:321:progress".to_owned()
            )
        );
    }

    #[test]
    fn prefixes_are_validated() {
        assert!(KeySpace::new("test-1.a_b").is_ok());
        for bad in ["", "A", "a:b", "a{b", "a b", &"a".repeat(49)] {
            assert!(KeySpace::new(bad).is_err(), "{bad:?}");
        }
    }
}
