//! The front end's Excel enroll route (docs/contract.md §7) end to end: the route, a real AI worker
//! with the standard handlers on the same database, read model and media storage, and the
//! students' password hashes checked with `credentials::verify_password` (the product has no
//! login route). Both backends: PostgreSQL + Redis, SQLite + the in-process store.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use jobpulse_domain::TenantId;
use jobpulse_testkit::{Backend, both};
use jobpulse_worker::ai::{AiWorker, AiWorkerConfig, AiWorkerHandle, HandlerSettings, Registry};
use jobpulse_worker::claim_loop::WorkerConfig;
use jobpulse_worker::excel::credentials;
use jobpulse_worker::excel::phone::Phone;
use jobpulse_worker::excel::testing::{Expected, WorkbookSpec, generate_students_workbook};
use reqwest::multipart::{Form, Part};
use serde_json::Value;

use crate::helpers::*;

const PATH: &str = "/api/v1/enrollments/lecture_enroll_from_excel/";

/// 14 valid rows (about 70 % with a student phone), one duplicate of an earlier row, one
/// without a name, one blank row.
fn workbook(seed: u64) -> anyhow::Result<(Vec<u8>, Expected)> {
    let mut spec = WorkbookSpec::valid_rows(14);
    spec.seed = seed;
    spec.duplicates = 1;
    spec.missing_name = 1;
    spec.blank = 1;
    let g = generate_students_workbook(&spec)?;
    Ok((g.bytes, g.expected))
}

fn form(bytes: &[u8], fields: &[(&str, String)]) -> Form {
    let mut f = Form::new().part(
        "file",
        Part::bytes(bytes.to_vec()).file_name("학생명단.xlsx"),
    );
    for (k, v) in fields {
        f = f.text(k.to_string(), v.clone());
    }
    f
}

async fn post(app: &DbApp, token: &str, form: Form) -> anyhow::Result<(u16, Value)> {
    let res = app
        .app
        .client
        .post(format!("{}{PATH}", app.app.base))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await?;
    let s = res.status().as_u16();
    Ok((s, res.json().await.unwrap_or(Value::Null)))
}

async fn get(app: &DbApp, path: &str, token: &str) -> anyhow::Result<(u16, Value)> {
    let res = app.app.get(path, Some(token)).await;
    let s = res.status().as_u16();
    Ok((s, res.json().await.unwrap_or(Value::Null)))
}

fn worker(app: &DbApp) -> AiWorkerHandle {
    let mut config = AiWorkerConfig::default().with_lease(Duration::from_secs(30));
    config.common = WorkerConfig {
        worker_id: "enroll-test".into(),
        idle_wait: Duration::from_millis(200),
        reap_every: Duration::from_millis(500),
        progress_every: Duration::from_millis(50),
        ..config.common
    };
    // The same credentials key as the API's, as `jobpulse` wires them.
    let mut handlers = HandlerSettings::default();
    handlers.excel_import.seal = app.state.credentials.clone().expect("the app has a key");
    AiWorker::new(
        app.state.db.clone(),
        app.state.store.clone(),
        app.state.relay.clone(),
        app.state.storage.clone(),
        Registry::standard(handlers),
        config,
    )
    .spawn()
}

/// Polls the progress route (as the front end does) until a terminal status.
async fn wait_done(app: &DbApp, job: &str, token: &str) -> anyhow::Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, v) = get(app, &format!("/api/v1/jobs/{job}/progress/"), token).await?;
        match v["status"].as_str() {
            Some("PENDING" | "RUNNING" | "RETRYING") => {}
            Some(_) => return Ok(v),
            None => anyhow::bail!("no status: {v}"),
        }
        anyhow::ensure!(Instant::now() < deadline, "not terminal in time: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts an enroll, waits for DONE and returns (progress answer, full result).
async fn enroll(
    app: &DbApp,
    tenant: i64,
    token: &str,
    bytes: &[u8],
    fields: &[(&str, String)],
) -> anyhow::Result<(Value, Value)> {
    let (s, body) = post(app, token, form(bytes, fields)).await?;
    anyhow::ensure!(s == 201, "{s} {body}");
    assert_eq!(body["status"], "PENDING", "{body}");
    let job = body["job_id"].as_str().context("job_id")?.to_owned();
    let done = wait_done(app, &job, token).await?;
    assert_eq!(done["status"], "DONE", "{done}");
    assert_eq!(done["job_type"], "excel_parsing");
    let (s, full) = get(app, &format!("/api/v1/jobs/{job}/result/"), token).await?;
    assert_eq!(s, 200, "{full}");
    // The DONE answer itself carries the credentials for staff (the front end re-reads them
    // from it), the same as the full result; the sealed form never leaves the API.
    assert_eq!(done["result"]["credentials"], full["credentials"], "{done}");
    for v in [&done, &full] {
        assert!(!v.to_string().contains("sealed"), "{v}");
    }
    at_rest_sealed(app, TenantId::new(tenant)?, &job, &full).await?;
    Ok((done, full))
}

/// No initial password is stored in clear: the ledger, the stored full result, the read
/// model's record and the job row (its payload) hold none of them.
async fn at_rest_sealed(
    app: &DbApp,
    tenant: TenantId,
    job: &str,
    full: &Value,
) -> anyhow::Result<()> {
    let id = jobpulse_domain::JobId::parse(job)?;
    let passwords: Vec<String> = full["credentials"]
        .as_array()
        .context("credentials")?
        .iter()
        .filter_map(|c| c["password"].as_str().map(str::to_owned))
        .collect();
    anyhow::ensure!(!passwords.is_empty(), "nothing to look for");
    let ledger = app.state.db.import_rows(&id).await?;
    let mut stored = Vec::new();
    for r in &ledger {
        if let Some(p) = &r.initial_password {
            assert!(p.starts_with("sealed:v1:"), "ledger: {p}");
            stored.push(p.clone());
        }
    }
    assert_eq!(stored.len(), passwords.len());
    let job_row = app
        .state
        .db
        .get_ai_job(tenant, &id)
        .await?
        .context("job row")?;
    let result_row = app
        .state
        .db
        .get_ai_result(job_row.tenant, &id)
        .await?
        .context("result row")?;
    let record = app
        .state
        .store
        .get(&jobpulse_domain::TaskKey::job(job_row.tenant, id.clone()))
        .await?
        .context("read model record")?;
    let texts = [
        result_row.to_string(),
        serde_json::to_string(&record.state)?,
        job_row.payload.to_string(),
    ];
    for pw in &passwords {
        for (what, text) in ["result row", "read model", "payload"].iter().zip(&texts) {
            assert!(
                !text.contains(&format!("\"{pw}\"")),
                "{what} holds a password in clear: {text}"
            );
        }
    }
    assert!(texts[0].contains("sealed:v1:"), "{}", texts[0]);
    Ok(())
}

/// `login_id → password` of the result's credentials.
fn credential_map(full: &Value) -> BTreeMap<String, (String, String)> {
    full["credentials"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    (
                        c["login_id"].as_str().unwrap_or_default().to_owned(),
                        (
                            c["name"].as_str().unwrap_or_default().to_owned(),
                            c["password"].as_str().unwrap_or_default().to_owned(),
                        ),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn hash_of(app: &DbApp, tenant: i64, login_id: &str) -> anyhow::Result<String> {
    app.state
        .db
        .student_password_hash(TenantId::new(tenant)?, login_id)
        .await?
        .with_context(|| format!("student {login_id}"))
}

/// Every created student is enrolled in `lecture`, in `session`.
async fn check_enrolled(
    app: &DbApp,
    tenant: i64,
    lecture: i64,
    session: i64,
    names: &[&str],
) -> anyhow::Result<()> {
    let t = TenantId::new(tenant)?;
    let enrolled = app.state.db.list_lecture_students(t, lecture).await?;
    for name in names {
        let s = enrolled
            .iter()
            .find(|s| s.name == *name)
            .with_context(|| format!("{name} enrolled in lecture {lecture}"))?;
        assert_eq!(
            app.state.db.enrollment_session(t, lecture, s.id).await?,
            Some(Some(session)),
            "{name}'s session"
        );
    }
    Ok(())
}

/// A tenant (one per mode: the generated sheets repeat their students) with a lecture of two
/// sessions: (tenant, lecture, first session, second session, a staff token).
async fn academy(app: &DbApp, code: &str) -> anyhow::Result<(i64, i64, i64, i64, String)> {
    let (t, lecture, first) = app.tenant(code).await?;
    let second = app
        .state
        .db
        .create_session(TenantId::new(t)?, lecture, "2회차")
        .await?
        .context("lecture exists")?;
    Ok((t, lecture, first, second, app.app.token(t, "teacher")))
}

async fn three_password_modes_end_to_end(b: Backend) -> anyhow::Result<()> {
    let app = DbApp::spawn(b).await?;
    let w = worker(&app);

    // random: one generated password per created student, returned to staff, light hash.
    let (t, lecture, first_session, _, staff) = academy(&app, "random").await?;
    let (bytes, exp) = workbook(11)?;
    let (done, full) = enroll(
        &app,
        t,
        &staff,
        &bytes,
        &[
            ("lecture_id", lecture.to_string()),
            ("password_mode", "random".into()),
            ("initial_password", String::new()),
        ],
    )
    .await?;
    let unique = exp.unique();
    assert_eq!(done["result"]["created"], unique, "{done}");
    assert_eq!(full["created"], unique);
    assert_eq!(full["duplicates"].as_array().map(Vec::len), Some(1));
    assert_eq!(full["failed"].as_array().map(Vec::len), Some(1), "{full}");
    let creds = credential_map(&full);
    assert_eq!(creds.len(), unique);
    let mut seen = std::collections::BTreeSet::new();
    for (login, (_, pw)) in &creds {
        assert_eq!(pw.len(), credentials::PASSWORD_LEN);
        assert!(seen.insert(pw.clone()), "passwords differ per student");
        let h = hash_of(&app, t, login).await?;
        assert!(credentials::verify_password(pw, &h), "{login}");
        assert!(!credentials::verify_password("0000", &h));
    }
    // No session given: the lecture's first.
    let names: Vec<&str> = creds.values().map(|(n, _)| n.as_str()).collect();
    check_enrolled(&app, t, lecture, first_session, &names).await?;

    // phone_last4, into the second session: students with a phone get its last four digits;
    // rows without one fail with a per-row error and create no one.
    let (t, lecture, _, second_session, staff) = academy(&app, "last4").await?;
    let tid = TenantId::new(t)?;
    let (bytes, exp) = workbook(22)?;
    let (_, full) = enroll(
        &app,
        t,
        &staff,
        &bytes,
        &[
            ("lecture_id", lecture.to_string()),
            ("password_mode", "phone_last4".into()),
            ("initial_password", String::new()),
            ("session_id", second_session.to_string()),
        ],
    )
    .await?;
    let with_phone: Vec<_> = exp
        .students
        .iter()
        .filter(|s| !exp.duplicates.iter().any(|(dup, _)| *dup == s.row))
        .collect();
    let (phoned, phoneless): (Vec<_>, Vec<_>) =
        with_phone.into_iter().partition(|s| s.phone.is_some());
    assert!(
        !phoned.is_empty() && !phoneless.is_empty(),
        "the sheet has both kinds"
    );
    assert_eq!(full["created"], phoned.len(), "{full}");
    let failed = full["failed"].as_array().context("failed")?;
    for s in &phoneless {
        let f = failed
            .iter()
            .find(|f| f["row"] == s.row)
            .with_context(|| format!("row {} without a phone fails: {full}", s.row))?;
        assert_eq!(f["name"], s.name.as_str());
        assert!(
            f["error"]
                .as_str()
                .is_some_and(|e| e.contains("학생 전화번호")),
            "{f}"
        );
    }
    let creds = credential_map(&full);
    assert_eq!(creds.len(), phoned.len());
    for s in &phoned {
        let (login, (_, pw)) = creds
            .iter()
            .find(|(_, (name, _))| *name == s.name)
            .with_context(|| format!("credential of {}", s.name))?;
        let digits = Phone::parse(s.phone.as_deref().unwrap_or_default())?.digits();
        assert_eq!(pw.as_str(), &digits[digits.len() - 4..], "{}", s.name);
        let h = hash_of(&app, t, login).await?;
        assert!(credentials::verify_password(pw, &h), "{login}");
    }
    let names: Vec<&str> = creds.values().map(|(n, _)| n.as_str()).collect();
    check_enrolled(&app, t, lecture, second_session, &names).await?;
    for s in &phoneless {
        assert!(
            app.state
                .db
                .find_student(tid, &s.name, &Phone::parse(&s.parent_phone)?.digits())
                .await?
                .is_none(),
            "no student for a failed row"
        );
    }

    // fixed: everyone gets the given password (spaces and Korean count as characters).
    let (t, lecture, first_session, _, staff) = academy(&app, "fixed").await?;
    let (bytes, exp) = workbook(33)?;
    let fixed = "우리 학원 2026!";
    let (_, full) = enroll(
        &app,
        t,
        &staff,
        &bytes,
        &[
            ("lecture_id", lecture.to_string()),
            ("password_mode", "fixed".into()),
            ("initial_password", fixed.into()),
            ("session_id", first_session.to_string()),
        ],
    )
    .await?;
    assert_eq!(full["created"], exp.unique(), "{full}");
    let creds = credential_map(&full);
    assert_eq!(creds.len(), exp.unique());
    for (login, (_, pw)) in &creds {
        assert_eq!(pw, fixed);
        let h = hash_of(&app, t, login).await?;
        assert!(
            h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "a chosen password gets the OWASP setting: {h}"
        );
        assert!(credentials::verify_password(fixed, &h), "{login}");
        assert!(!credentials::verify_password("우리 학원 2025!", &h));
    }
    w.shutdown().await;
    Ok(())
}
both!(three_password_modes_end_to_end);

async fn bad_enrolls_are_refused_and_create_nothing(b: Backend) -> anyhow::Result<()> {
    let app = DbApp::spawn(b).await?;
    let (t, lecture, session) = app.tenant("acme").await?;
    let (other, other_lecture, other_session) = app.tenant("other").await?;
    let staff = app.app.token(t, "admin");
    let (bytes, _) = workbook(44)?;
    let ok = |mode: &str, pw: &str| {
        vec![
            ("lecture_id", lecture.to_string()),
            ("password_mode", mode.to_owned()),
            ("initial_password", pw.to_owned()),
        ]
    };
    let with = |mut f: Vec<(&'static str, String)>, k: &'static str, v: String| {
        f.retain(|(name, _)| *name != k);
        f.push((k, v));
        f
    };
    let without = |mut f: Vec<(&'static str, String)>, k: &str| {
        f.retain(|(name, _)| *name != k);
        f
    };
    let cases: Vec<(&str, Form, u16, &str)> = vec![
        (
            "no file",
            {
                let mut f = Form::new();
                for (k, v) in ok("random", "") {
                    f = f.text(k, v);
                }
                f
            },
            400,
            "file",
        ),
        (
            "no lecture",
            form(&bytes, &without(ok("random", ""), "lecture_id")),
            400,
            "lecture_id",
        ),
        (
            "no mode",
            form(&bytes, &without(ok("random", ""), "password_mode")),
            400,
            "password_mode",
        ),
        (
            "unknown mode",
            form(&bytes, &ok("birthday", "")),
            400,
            "password_mode",
        ),
        (
            "fixed, 3 characters",
            form(&bytes, &ok("fixed", "abc")),
            400,
            "initial_password",
        ),
        (
            "fixed, no password",
            form(&bytes, &without(ok("fixed", ""), "initial_password")),
            400,
            "initial_password",
        ),
        (
            "a password with random",
            form(&bytes, &ok("random", "1234")),
            400,
            "initial_password",
        ),
        (
            "lecture not a number",
            form(
                &bytes,
                &with(ok("random", ""), "lecture_id", "1 OR 1=1".into()),
            ),
            400,
            "lecture_id",
        ),
        (
            "another tenant's lecture",
            form(
                &bytes,
                &with(ok("random", ""), "lecture_id", other_lecture.to_string()),
            ),
            422,
            "lecture",
        ),
        (
            "a missing lecture",
            form(
                &bytes,
                &with(ok("random", ""), "lecture_id", "999999".into()),
            ),
            422,
            "lecture",
        ),
        (
            "another tenant's session",
            form(
                &bytes,
                &with(ok("random", ""), "session_id", other_session.to_string()),
            ),
            422,
            "session",
        ),
        (
            "an unknown field",
            form(&bytes, &with(ok("random", ""), "tenant_id", "2".into())),
            400,
            "unknown field",
        ),
        (
            "the lecture twice",
            form(
                &bytes,
                &with(ok("random", ""), "lecture_id", lecture.to_string()),
            )
            .text("lecture_id", lecture.to_string()),
            400,
            "twice",
        ),
    ];
    for (what, f, status, mentions) in cases {
        let (s, body) = post(&app, &staff, f).await?;
        assert_eq!(s, status, "{what}: {body}");
        let msg = body["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(mentions), "{what}: {msg}");
    }
    // Not multipart at all.
    let res = app
        .app
        .client
        .post(format!("{}{PATH}", app.app.base))
        .bearer_auth(&staff)
        .json(&serde_json::json!({"lecture_id": lecture, "password_mode": "random"}))
        .send()
        .await?;
    assert_eq!(res.status(), 400);
    // Students and parents may not enroll; no token is 401.
    for role in ["student", "parent"] {
        let tok = app.app.token(t, role);
        let (s, _) = post(&app, &tok, form(&bytes, &ok("random", ""))).await?;
        assert_eq!(s, 403, "{role}");
    }
    let res = app
        .app
        .client
        .post(format!("{}{PATH}", app.app.base))
        .multipart(form(&bytes, &ok("random", "")))
        .send()
        .await?;
    assert_eq!(res.status(), 401);

    // Nothing was created: no job in either tenant, no stored file.
    for (tenant, token) in [(t, staff.clone()), (other, app.app.token(other, "owner"))] {
        let (_, list) = get(&app, "/api/v1/jobs/", &token).await?;
        assert_eq!(
            list["results"].as_array().map(Vec::len),
            Some(0),
            "tenant {tenant}: {list}"
        );
    }
    let media = app.dir.path().join("media");
    let stored = walk(&media);
    assert!(stored.is_empty(), "stored files: {stored:?}");

    // And a good one is accepted (with the session given), so the cases above were refused
    // for their own reason.
    let (s, body) = post(
        &app,
        &staff,
        form(
            &bytes,
            &with(ok("fixed", "abcd"), "session_id", session.to_string()),
        ),
    )
    .await?;
    assert_eq!(s, 201, "{body}");
    assert!(body["job_id"].is_string());
    assert_eq!(body["status"], "PENDING");
    Ok(())
}
both!(bad_enrolls_are_refused_and_create_nothing);

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
