//! The scenario's own tests: the streams' layout, their paths, the percentiles, `/proc`.

use std::collections::HashMap;

use super::*;

#[test]
fn the_latency_group_watches_video_1_and_the_rest_spread_over_tenants() {
    for i in 0..1000 {
        assert_eq!(layout(i, 1000, 10), (1, 1));
    }
    let mut per_tenant = HashMap::new();
    for i in 1000..10_000 {
        let (tenant, first) = layout(i, 1000, 10);
        assert!((2..=10).contains(&tenant), "{tenant}");
        assert!(first > 1 && first + PAGE - 1 <= 1000, "{first}");
        *per_tenant.entry(tenant).or_insert(0) += 1;
    }
    assert!(per_tenant.values().all(|n| *n == 1000), "{per_tenant:?}");
    // One tenant: the others watch other pages of tenant 1.
    assert_eq!(layout(5, 2, 1).0, 1);
    assert_ne!(layout(5, 2, 1).1, 1);
}

#[test]
fn a_stream_path_names_a_page_of_videos() {
    let p = path(21);
    assert!(
        p.starts_with("/api/v1/progress/stream?videos=21,22,"),
        "{p}"
    );
    assert!(p.ends_with(",40"), "{p}");
}

#[test]
fn percentiles() {
    let s = Stats::of((1..=100).map(f64::from).rev().collect());
    let near = |got: f64, want: f64| (got - want).abs() <= want * 0.001;
    assert_eq!(s.count, 100);
    assert!(
        near(s.p50_ms, 50.0) && near(s.p99_ms, 99.0) && near(s.max_ms, 100.0),
        "{s:?}"
    );
    let none = Stats::of(Vec::new());
    assert!(none.p99_ms.is_nan());
    let back: Stats =
        serde_json::from_str(&serde_json::to_string(&none).expect("json")).expect("read back");
    assert!(back.p99_ms.is_nan() && back.count == 0, "{back:?}");
}

#[test]
fn gauges_read_proc() {
    let mut g = Gauges::open();
    assert!(g.rss_kb().is_some_and(|kb| kb > 0));
    assert!(g.rss_kb().is_some(), "a second read works too");
    assert!(open_files_limit().is_some());
}
