//! Scenario 6 — hostile input: generated ids, paths, query strings, headers and bodies against
//! every route group (progress, batch, SSE, ingest, media, jobs, lists) and below HTTP (broken
//! request lines and headers), sent raw over TCP so nothing is cleaned up by a client library.
//!
//! Every request is invalid by construction (an id outside the grammar, a body that cannot
//! parse or validate), so none of them may reach the read model. Pass: 0 panics (the process
//! lives, no panic in its log), 0 answers ≥ 500 (and 413 for every body above the limit), and
//! no read-model command caused by them — the
//! own redis-server's `INFO commandstats` and the store's own counters in `/metrics` move only
//! by the background sentinel checks. Also: no spool file is left behind.
//!
//! Counts: 10 000 requests in CI, 100 000 with `JOBPULSE_RELIABILITY_FULL=1`; the generator's
//! seed is printed with the command that replays it (`JOBPULSE_TEST_SEED`). A valid poll at the
//! end shows that both instruments (commandstats, the store's counters) would have seen a
//! request that reached the store.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{RngExt, SeedableRng};

use crate::figure;
use crate::harness::raw::{self, Outcome};
use crate::harness::redis::delta;
use crate::harness::stats::metric;
use crate::harness::{Cluster, scaled};

/// Strings that have broken parsers before.
const NASTY: &[&str] = &[
    ":",
    "*",
    "?",
    "[",
    "]",
    "{",
    "}",
    "{t1}",
    "a:b",
    "1:2",
    "1*",
    "*1",
    "[1]",
    "{1}",
    "1 2",
    "1,2",
    "-1",
    "0",
    "00",
    "01",
    "+1",
    "1.0",
    "1e3",
    "0x10",
    "1_000",
    " 1",
    "1 ",
    "\t1",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551616",
    "999999999999999999",
    "1000000000000000000",
    "99999999999999999999999999999999",
    "-9223372036854775809",
    "١٢٣",
    "１２３",
    "Ⅻ",
    "\u{0}",
    "\u{0}1",
    "\r\n",
    "\n",
    "%",
    "%00",
    "%zz",
    "%2",
    "..",
    ".",
    "../..",
    "../../etc/passwd",
    "..%2f..%2f",
    "/",
    "//",
    "\\",
    "'",
    "\"",
    "<script>",
    "${jndi:x}",
    "{{7*7}}",
    "$(id)",
    "`id`",
    "NULL",
    "null",
    "undefined",
    "NaN",
    "Infinity",
    "true",
    "[]",
    "{}",
    "😀",
    "\u{202e}1",
    "a\u{200d}b",
    "ÿ",
    "\u{fffd}",
    "ǅ",
    "İ",
    "job id",
    "job\tid",
    "a|b",
    "a;b",
    "a&b",
    "a=b",
    "a#b",
    "a+b",
    "a@b",
    "a!b",
    "~a",
    "a^b",
];

fn nasty(rng: &mut StdRng) -> String {
    match rng.random_range(0..6) {
        0 | 1 => (*NASTY.choose(rng).expect("nonempty")).to_owned(),
        2 => {
            // Overlong: beyond the 64 of a job id / 18 digits of a number.
            let n = *[19usize, 65, 100, 1000, 4000, 20_000]
                .choose(rng)
                .expect("nonempty");
            let c = *['1', 'a', '9', '-', '_'].choose(rng).expect("nonempty");
            std::iter::repeat_n(c, n).collect()
        }
        3 => {
            // Random bytes of a hostile alphabet.
            const ALPHA: &[char] = &[
                ':', '*', '?', '[', '{', '}', ']', '/', '%', '\\', ' ', '\'', '"', '<', '>', '#',
                '&', '=', '+', ',', ';', '😀', 'é', '\u{0}', '\u{7f}', 'A', '1', '-',
            ];
            let len = rng.random_range(1..120);
            let mut s: String = (0..len)
                .map(|_| *ALPHA.choose(rng).expect("nonempty"))
                .collect();
            s.push(*[':', '*', '{', '%', ' '].choose(rng).expect("nonempty"));
            s
        }
        4 => format!(
            "{}{}",
            NASTY.choose(rng).expect("nonempty"),
            NASTY.choose(rng).expect("nonempty")
        ),
        _ => format!("{}", rng.random::<u128>()),
    }
}

/// An id no video id parser may accept. Without commas: in lists a comma separates ids, and
/// `1,2` is two valid ones.
fn bad_video_id(rng: &mut StdRng) -> String {
    loop {
        let s = nasty(rng).replace(',', ";");
        if jobpulse_domain::VideoId::parse(&s).is_err() {
            return s;
        }
    }
}

/// An id no job id parser may accept (without commas, see [`bad_video_id`]).
fn bad_job_id(rng: &mut StdRng) -> String {
    loop {
        let s = nasty(rng).replace(',', ";");
        if jobpulse_domain::JobId::parse(&s).is_err() {
            return s;
        }
    }
}

/// A job type no parser may accept (a syntactically valid unknown type is recorded as a
/// rejected job, which is a write by design).
fn bad_job_type(rng: &mut StdRng) -> String {
    loop {
        let s = nasty(rng);
        if jobpulse_domain::JobType::parse(s.trim()).is_err() && !s.trim().is_empty() {
            return s;
        }
    }
}

/// Percent-encodes everything outside the unreserved set; sometimes leaves the characters that
/// request lines tolerate raw (`: * [ ] { } ' ! $ ( ) , ; = @ ~`).
fn enc(rng: &mut StdRng, s: &str) -> String {
    let raw_ok = rng.random_bool(0.3);
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (raw_ok && b"*:[]{}'!$(),;=@".contains(&b));
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn ev(rng: &mut StdRng) -> String {
    let id = bad_video_id(rng);
    enc(rng, &id)
}

fn ej(rng: &mut StdRng) -> String {
    let id = bad_job_id(rng);
    enc(rng, &id)
}

fn en(rng: &mut StdRng) -> String {
    let s = nasty(rng);
    enc(rng, &s)
}

/// Nested JSON arrays or objects, `depth` deep.
fn deep(depth: usize, object: bool) -> String {
    if object {
        format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
    } else {
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
    }
}

/// A JSON text that is not a valid batch body (or not JSON at all).
fn bad_json(rng: &mut StdRng) -> Vec<u8> {
    let video = serde_json::Value::String(bad_video_id(rng));
    let job = serde_json::Value::String(bad_job_id(rng));
    let v: String = match rng.random_range(0..14) {
        0 => format!("{{\"videos\": [1, {video}]}}"),
        1 => format!("{{\"jobs\": [\"ok\", {job}]}}"),
        2 => "{\"videos\": [0]}".into(),
        3 => "{\"videos\": [-1, 1]}".into(),
        4 => "{\"videos\": [1e400]}".into(),
        5 => "{\"videos\": [18446744073709551616]}".into(),
        6 => format!(
            "{{\"videos\": {}}}",
            deep(rng.random_range(2..5000), rng.random_bool(0.5))
        ),
        7 => deep(rng.random_range(100..100_000), rng.random_bool(0.5)),
        8 => "{\"videos\": [1, 2".into(),
        9 => format!(
            "{{\"videos\": [{}]}}",
            (1..=201)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ),
        10 => "{\"videos\": [1], \"jobs\": [\"a\"], \"extra\": 1}".into(),
        11 => "{\"videos\": [true, null, {}]}".into(),
        12 => "\u{feff}{\"videos\": \"1\"}".into(),
        _ => "[NaN, Infinity, -Infinity]".into(),
    };
    let mut bytes = v.into_bytes();
    if rng.random_bool(0.05) {
        bytes.extend_from_slice(&[0xff, 0xfe, 0x00]);
    }
    bytes
}

/// An ingest body that cannot validate.
fn bad_ingest(rng: &mut StdRng) -> Vec<u8> {
    let s: String = match rng.random_range(0..14) {
        0 => "{\"fence\": {\"generation\": -1, \"attempt\": 1}, \"status\": \"PROCESSING\"}".into(),
        1 => "{\"fence\": {\"generation\": 4294967296, \"attempt\": 1}, \"status\": \"PROCESSING\"}".into(),
        2 => "{\"fence\": {\"generation\": 1, \"attempt\": 1, \"seq\": 1e30}, \"status\": \"PROCESSING\"}".into(),
        3 => "{\"fence\": {\"generation\": 1, \"attempt\": 1}, \"status\": \"EXPLODED\"}".into(),
        4 => "{\"fence\": {\"generation\": 1, \"attempt\": 1}, \"status\": \"PROCESSING\", \"percent\": 101}".into(),
        5 => "{\"fence\": {\"generation\": 1, \"attempt\": 1}, \"status\": \"PROCESSING\", \"percent\": 300}".into(),
        6 => "{\"fence\": {\"generation\": 1, \"attempt\": 1}, \"status\": \"PROCESSING\", \"step\": {\"index\": 0, \"total\": 7, \"name\": \"x\", \"display\": \"x\"}}".into(),
        7 => "{\"fence\": {\"generation\": 1, \"attempt\": 1}, \"status\": \"PROCESSING\", \"step\": {\"index\": 9, \"total\": 7, \"name\": \"x\", \"display\": \"x\"}}".into(),
        8 => format!("{{\"fence\": {{\"generation\": 1, \"attempt\": 1}}, \"status\": \"FAILED\", \"error\": \"{}\"}}", "e".repeat(60_000)),
        9 => format!("{{\"fence\": {{\"generation\": 1, \"attempt\": 1}}, \"status\": \"DONE\", \"result\": {}}}", deep(rng.random_range(200..20_000), true)),
        10 => "{\"status\": \"PROCESSING\"}".into(),
        11 => "{\"fence\": {\"generation\": 1, \"attempt\": 1}, \"status\": \"PROCESSING\", \"unknown\": 1}".into(),
        12 => format!("{{\"fence\": {{\"generation\": 1, \"attempt\": 1}}, \"status\": \"PROCESSING\", \"hls_path\": \"{}\"}}", "p".repeat(70_000)),
        _ => "{\"fence\": {\"generation\": 1, \"attempt\": 1}, \"status\": \"READY\", \"job_type\": \"excel_parsing\"}".into(),
    };
    s.into_bytes()
}

/// One generated request and the name of its family.
fn generate(rng: &mut StdRng, token: &str, worker: &str) -> (&'static str, Vec<u8>) {
    let auth = format!("Bearer {token}");
    let wauth = format!("Bearer {worker}");
    let h = |v: &str| -> Vec<u8> { v.as_bytes().to_vec() };
    let json = h("application/json");
    let a = h(&auth);
    let w = h(&wauth);
    let req = |m: &str, t: String, hs: &[(&str, &[u8])], body: &[u8]| {
        raw::request(m, t.as_bytes(), hs, body)
    };
    match rng.random_range(0..100) {
        0..15 => {
            let id = bad_video_id(rng);
            (
                "video progress",
                req(
                    "GET",
                    format!("/api/v1/media/videos/{}/progress/", enc(rng, &id)),
                    &[("Authorization", &a)],
                    b"",
                ),
            )
        }
        15..30 => {
            let id = bad_job_id(rng);
            let hdr = if rng.random_bool(0.2) {
                h(&"W/\"r1\", ".repeat(rng.random_range(1..500)))
            } else {
                h("\"u\"")
            };
            (
                "job progress",
                req(
                    "GET",
                    format!("/api/v1/jobs/{}/progress/", enc(rng, &id)),
                    &[("Authorization", &a), ("If-None-Match", &hdr)],
                    b"",
                ),
            )
        }
        30..40 => {
            let bad = if rng.random_bool(0.5) {
                format!("videos=1,2,{}", ev(rng))
            } else {
                format!("jobs=ok,{}", ej(rng))
            };
            let q = match rng.random_range(0..6) {
                0 => format!("{bad}&{bad}"),
                1 => format!(
                    "videos={}",
                    (1..=201)
                        .map(|i| i.to_string())
                        .collect::<Vec<_>>()
                        .join("%2C")
                ),
                2 => format!("{bad}&other={}", en(rng)),
                3 => format!("{}&{bad}", "videos=".repeat(rng.random_range(1..200))),
                4 => format!("{}={bad}", en(rng)),
                _ => bad,
            };
            (
                "batch get",
                req(
                    "GET",
                    format!("/api/v1/progress/?{q}"),
                    &[("Authorization", &a)],
                    b"",
                ),
            )
        }
        40..50 => {
            let body = bad_json(rng);
            (
                "batch post",
                req(
                    "POST",
                    "/api/v1/progress/".into(),
                    &[("Authorization", &a), ("Content-Type", &json)],
                    &body,
                ),
            )
        }
        50..52 => {
            // Oversized: beyond the 1 MiB body limit.
            let body = vec![b'['; 1024 * 1024 + rng.random_range(1..100_000)];
            (
                "oversized body",
                req(
                    "POST",
                    "/api/v1/progress/".into(),
                    &[("Authorization", &a), ("Content-Type", &json)],
                    &body,
                ),
            )
        }
        52..57 => {
            let q = match rng.random_range(0..4) {
                0 => format!("videos={}", ev(rng)),
                1 => format!("jobs={}&access_token={}", ej(rng), en(rng)),
                2 => format!("all=true&videos={}", ev(rng)),
                _ => format!("videos=1&jobs={}", ej(rng)),
            };
            let leid = h(&nasty(rng)
                .chars()
                .filter(|c| !c.is_control())
                .collect::<String>());
            (
                "sse",
                req(
                    "GET",
                    format!("/api/v1/progress/stream?{q}"),
                    &[("Authorization", &a), ("Last-Event-ID", &leid)],
                    b"",
                ),
            )
        }
        57..62 => {
            let (kind, id) = if rng.random_bool(0.5) {
                ("videos", bad_video_id(rng))
            } else {
                ("jobs", bad_job_id(rng))
            };
            let action = *["progress", "transition", "heartbeat"]
                .choose(rng)
                .expect("nonempty");
            let body = b"{\"fence\": {\"generation\": 1, \"attempt\": 1, \"seq\": 2}, \"status\": \"PROCESSING\", \"percent\": 5}";
            (
                "ingest bad id",
                req(
                    "POST",
                    format!("/internal/v1/{kind}/{}/{action}", enc(rng, &id)),
                    &[("Authorization", &w), ("Content-Type", &json)],
                    body,
                ),
            )
        }
        62..67 => {
            let (path, body) = if rng.random_bool(0.5) {
                ("/internal/v1/videos/1/progress", bad_ingest(rng))
            } else {
                ("/internal/v1/jobs/abc/transition", bad_ingest(rng))
            };
            let body = if rng.random_bool(0.1) {
                vec![b' '; 70 * 1024]
            } else {
                body
            };
            (
                "ingest bad body",
                req(
                    "POST",
                    path.into(),
                    &[("Authorization", &w), ("Content-Type", &json)],
                    &body,
                ),
            )
        }
        67..72 => {
            let id = ev(rng);
            let (m, p) = match rng.random_range(0..3) {
                0 => ("GET", format!("/api/v1/media/videos/{id}/")),
                1 => ("DELETE", format!("/api/v1/media/videos/{id}/")),
                _ => ("POST", format!("/api/v1/media/videos/{id}/retry/")),
            };
            ("media by id", req(m, p, &[("Authorization", &a)], b""))
        }
        72..77 => {
            let id = ej(rng);
            let (m, p) = match rng.random_range(0..4) {
                0 => ("GET", format!("/api/v1/jobs/{id}/")),
                1 => ("GET", format!("/api/v1/jobs/{id}/result/")),
                2 => ("POST", format!("/api/v1/jobs/{id}/cancel/")),
                _ => ("GET", format!("/api/v1/jobs/ok/files/{}", en(rng))),
            };
            ("jobs by id", req(m, p, &[("Authorization", &a)], b""))
        }
        77..82 => {
            let body: Vec<u8> = match rng.random_range(0..6) {
                0 => format!(
                    "{{\"job_type\": {}}}",
                    serde_json::Value::String(bad_job_type(rng))
                )
                .into_bytes(),
                1 => b"{\"job_type\": \"excel_parsing\", \"payload\": [1]}".to_vec(),
                2 => b"{\"job_type\": \"excel_parsing\", \"lecture_id\": -1".to_vec(),
                3 => deep(rng.random_range(50..50_000), true).into_bytes(),
                4 => format!(
                    "{{\"job_type\": \"X\", \"payload\": {}}}",
                    deep(rng.random_range(50..5000), true)
                )
                .into_bytes(),
                _ => b"{\"job_type\": \"excel_parsing\", \"lecture_id\": 99999999999999999999}"
                    .to_vec(),
            };
            let ct = if rng.random_bool(0.9) {
                json.clone()
            } else {
                h("text/plain")
            };
            (
                "job submit",
                req(
                    "POST",
                    "/api/v1/jobs/".into(),
                    &[("Authorization", &a), ("Content-Type", &ct)],
                    &body,
                ),
            )
        }
        82..86 => {
            let b = "XyZzY";
            let ct_ok = h(&format!("multipart/form-data; boundary={b}"));
            let (ct, body): (Vec<u8>, Vec<u8>) = match rng.random_range(0..7) {
                0 => (h("multipart/form-data"), b"--x\r\n\r\n".to_vec()),
                1 => (ct_ok.clone(), b"garbage without boundaries".to_vec()),
                2 => (ct_ok.clone(), format!("--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mp4\"\r\n\r\nnot finished").into_bytes()),
                3 => (ct_ok.clone(), format!("--{b}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\n{}\r\n--{b}--\r\n", "t".repeat(5000)).into_bytes()),
                4 => (ct_ok.clone(), format!("--{b}\r\nContent-Disposition: form-data; name=\"session_id\"\r\n\r\n{}\r\n--{b}--\r\n", nasty(rng)).into_bytes()),
                5 => (ct_ok.clone(), format!("--{b}\r\nContent-Disposition: form-data; name=\"{}\"\r\n\r\nx\r\n--{b}--\r\n", "n".repeat(rng.random_range(1..20_000))).into_bytes()),
                _ => (ct_ok.clone(), format!("--{b}\r\nContent-Disposition: form-data; name=\"job_type\"\r\n\r\n{}\r\n--{b}--\r\n", bad_job_type(rng).replace(['\r', '\n'], "")).into_bytes()),
            };
            let path = if rng.random_bool(0.5) {
                "/api/v1/media/videos/"
            } else {
                "/api/v1/jobs/"
            };
            (
                "multipart",
                req(
                    "POST",
                    path.into(),
                    &[("Authorization", &a), ("Content-Type", &ct)],
                    &body,
                ),
            )
        }
        86..90 => {
            let q = match rng.random_range(0..5) {
                0 => format!("status={}", en(rng)),
                1 => format!("limit={}", en(rng)),
                2 => format!("before={}", en(rng)),
                3 => format!("session_id={}&x=1", en(rng)),
                _ => format!("{}={}", en(rng), en(rng)),
            };
            let path = if rng.random_bool(0.5) {
                "/api/v1/media/videos/"
            } else {
                "/api/v1/jobs/"
            };
            (
                "list query",
                req("GET", format!("{path}?{q}"), &[("Authorization", &a)], b""),
            )
        }
        _ => {
            // Below the routes: broken HTTP.
            let kind = rng.random_range(0..9);
            let bytes: Vec<u8> = match kind {
                0 => {
                    let mut v = b"GET /api/v1/media/videos/".to_vec();
                    v.extend((0..rng.random_range(1..50)).map(|_| rng.random::<u8>()));
                    v.extend_from_slice(b"/progress/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                    v
                }
                1 => format!("GET /api/v1/jobs/a/progress/ HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n", "b".repeat(rng.random_range(10_000..200_000))).into_bytes(),
                2 => b"POST /api/v1/progress/ HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\nConnection: close\r\n\r\n".to_vec(),
                3 => b"POST /api/v1/progress/ HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nContent-Length: 20\r\nConnection: close\r\n\r\n0123456789".to_vec(),
                4 => b"POST /api/v1/progress/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nZZZ\r\nxx\r\n".to_vec(),
                5 => b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
                6 => format!("{} /api/v1/jobs/a/progress/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", *["PUT", "PATCH", "TRACE", "CONNECT", "BREW", "G\u{0}ET"].choose(rng).expect("nonempty")).into_bytes(),
                7 => {
                    let mut v = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Bin: ".to_vec();
                    v.extend((0..64).map(|_| rng.random::<u8>()));
                    v.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
                    v
                }
                _ => (0..rng.random_range(1..2000)).map(|_| rng.random::<u8>()).collect(),
            };
            ("broken http", bytes)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_never_reach_the_store_or_crash() -> anyhow::Result<()> {
    let c = Cluster::start().await?;
    let t = c.tenant("acme").await?;
    let server = c.serve(&[]).await?;
    let token = c.token(t.tenant_id, "owner");
    let worker = c.worker_token(t.tenant_id);
    let addr = SocketAddr::from(([127, 0, 0, 1], server.port));
    let seed = jobpulse_testkit::seed();
    let total = scaled(10_000, 100_000);
    figure!("s06 seed {seed}, {total} requests");

    let before = c.redis.commandstats().await?;
    let metrics_before = server.api.metrics().await?;
    let clients = 8;
    let mut tasks = tokio::task::JoinSet::new();
    let (token, worker) = (Arc::new(token), Arc::new(worker));
    for i in 0..clients {
        let (token, worker) = (token.clone(), worker.clone());
        tasks.spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed.wrapping_add(i));
            let mut seen: BTreeMap<(&'static str, String), u64> = BTreeMap::new();
            let mut five: Vec<String> = Vec::new();
            for _ in 0..total / clients as usize {
                let (family, bytes) = generate(&mut rng, &token, &worker);
                let (outcome, _) = raw::send(addr, &bytes, Duration::from_secs(20)).await?;
                let label = match outcome {
                    Outcome::Status(s) => s.to_string(),
                    Outcome::Closed => "closed".into(),
                    Outcome::Timeout => "timeout".into(),
                };
                if matches!(outcome, Outcome::Status(s) if s >= 500) || outcome == Outcome::Timeout
                {
                    five.push(format!(
                        "{family} → {label}: {}",
                        String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
                    ));
                }
                *seen.entry((family, label)).or_default() += 1;
            }
            anyhow::Ok((seen, five))
        });
    }
    let mut seen: BTreeMap<(&'static str, String), u64> = BTreeMap::new();
    let mut bad: Vec<String> = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let (s, f) = r??;
        for (k, v) in s {
            *seen.entry(k).or_default() += v;
        }
        bad.extend(f);
    }
    let after = c.redis.commandstats().await?;
    let metrics_after = server.api.metrics().await?;
    for ((family, status), n) in &seen {
        figure!("s06 {family:>16} → {status}: {n}");
    }
    let d = delta(&before, &after);
    figure!("s06 redis commands during the run: {d:?}");
    // The background sentinel check (GET every 5 s) and our own INFO calls are all that may run.
    let data_commands: Vec<(&String, &u64)> = d
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "get" | "info" | "ping" | "client|setinfo" | "hello"
            )
        })
        .collect();
    let store_ops = |text: &str| -> f64 {
        ["get", "get_many", "apply", "apply_many", "changes_since"]
            .iter()
            .map(|op| metric(text, "jobpulse_store_ops_total", &[&format!("op=\"{op}\"")]))
            .sum()
    };
    let ops = store_ops(&metrics_after) - store_ops(&metrics_before);
    figure!("s06 store reads/writes counted by the server: {ops}");
    // Control: one valid poll moves both instruments, so their zeros above were measured.
    let control = server
        .api
        .get(
            "/api/v1/media/videos/987654/progress/",
            Some(token.as_str()),
        )
        .await?;
    let control_stats = delta(&after, &c.redis.commandstats().await?);
    let control_ops = store_ops(&server.api.metrics().await?) - store_ops(&metrics_after);
    figure!(
        "s06 control: a valid poll answered {}, Redis commands {control_stats:?}, store operations {control_ops}",
        control.status
    );
    let mut server = server;
    anyhow::ensure!(
        server.proc.alive(),
        "serve died\n{}",
        server.proc.log_tail(40)
    );
    anyhow::ensure!(
        !server.proc.log().contains("panicked"),
        "serve panicked\n{}",
        server.proc.log_tail(40)
    );
    anyhow::ensure!(
        bad.is_empty(),
        "{} answers ≥ 500 or timeouts, e.g.:\n{}",
        bad.len(),
        bad.iter().take(5).cloned().collect::<Vec<_>>().join("\n")
    );
    anyhow::ensure!(
        data_commands.is_empty(),
        "invalid requests reached Redis: {data_commands:?}"
    );
    anyhow::ensure!(
        ops == 0.0,
        "invalid requests reached the store: {ops} operations"
    );
    anyhow::ensure!(
        control.status == 200 && control_stats.contains_key("hmget") && control_ops >= 1.0,
        "the instruments did not see a valid poll (answer {}, Redis commands {control_stats:?}, store operations {control_ops}): their zeros measured nothing",
        control.status
    );
    let spool = c.data_dir.join("spool");
    let left = crate::harness::files_under(&spool);
    anyhow::ensure!(left.is_empty(), "spool files left behind: {left:?}");
    Ok(())
}
