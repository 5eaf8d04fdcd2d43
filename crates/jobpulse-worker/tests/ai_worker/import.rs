//! `excel_parsing` through the worker: counts, credentials, the read model, progress, a killed
//! worker, a large result.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use anyhow::{Context, ensure};
use jobpulse_db::sealed::SEALED_CREDENTIALS_KEY;
use jobpulse_db::{ImportOutcome, NewAiJob, NewCredentials, StudentInput};
use jobpulse_domain::{JobId, JobStatus, JobType, Percent, State};

use jobpulse_worker::excel::Phone;
use jobpulse_worker::excel::credentials;
use jobpulse_worker::excel::report::ImportReport;
use jobpulse_worker::excel::testing::{
    Expected, ExpectedStudent, WorkbookSpec, generate_students_workbook,
};

use crate::helpers::{Backend, Env, both, job_status, watch_until_terminal};

/// Bigger than any wait a correct run needs on a loaded 2-core machine.
const LONG: Duration = Duration::from_secs(300);

fn digits(canonical: &str) -> String {
    canonical.chars().filter(char::is_ascii_digit).collect()
}

/// Rows of pre-existing students left active / soft-deleted.
struct Seeded {
    active: BTreeSet<u32>,
    deleted: BTreeSet<u32>,
}

/// Puts the sheet's pre-existing students in the database (in another lecture, as last term's
/// students would be) and soft-deletes every other one.
async fn seed_pre_existing(env: &Env, expected: &Expected) -> anyhow::Result<Seeded> {
    let tenant = env.tenant();
    let (old_lecture, _) = env.db.create_lecture(tenant, "지난 학기").await?;
    // The ledger needs a job: one that never runs (cancelled while it waits).
    let seed_job = env
        .db
        .submit_ai_job(NewAiJob::new(tenant, JobType::parse("seed_students")?))
        .await?
        .value
        .job
        .job_id;
    env.db.cancel_ai_job(tenant, &seed_job).await?;
    let mut seeded = Seeded {
        active: BTreeSet::new(),
        deleted: BTreeSet::new(),
    };
    for (i, s) in expected.pre_existing.iter().enumerate() {
        let phone = Phone::parse(&s.parent_phone)?;
        let input = StudentInput {
            name: s.name.clone(),
            phone: s.phone.as_deref().map(digits),
            parent_phone: phone.digits(),
            school: s.school.clone(),
            grade: s.grade.clone(),
        };
        let mut attempt = 0;
        let row = loop {
            let login_id = credentials::login_id("s", &phone, attempt)?;
            let creds = NewCredentials {
                login_id,
                password: "unused".into(),
                password_hash: "unused".into(),
            };
            let r = env
                .db
                .import_student_row(tenant, &seed_job, old_lecture, i as u32 + 1, &input, || {
                    creds
                })
                .await;
            match r {
                Err(jobpulse_db::DbError::Duplicate(_)) => attempt += 1,
                other => break other?,
            }
        };
        ensure!(row.outcome == ImportOutcome::Created, "seeded {row:?}");
        if i % 2 == 1 {
            let id = row.student_id.context("created student id")?;
            ensure!(env.db.delete_student(tenant, id).await?, "soft-deleted");
            seeded.deleted.insert(s.row);
        } else {
            seeded.active.insert(s.row);
        }
    }
    Ok(seeded)
}

/// The students a correct import creates: each identity's first row, unless it was seeded.
fn expected_created<'e>(expected: &'e Expected, seeded: &Seeded) -> Vec<&'e ExpectedStudent> {
    let pre: HashSet<u32> = seeded.active.union(&seeded.deleted).copied().collect();
    let repeats: HashSet<u32> = expected.duplicates.iter().map(|(r, _)| *r).collect();
    expected
        .students
        .iter()
        .filter(|s| !repeats.contains(&s.row) && !pre.contains(&s.row))
        .collect()
}

/// Checks a finished import's full result against what the generator says.
fn check_report(report: &ImportReport, expected: &Expected, seeded: &Seeded) -> anyhow::Result<()> {
    let created = expected_created(expected, seeded);
    assert_eq!(report.created as usize, created.len(), "created");
    let mut dup_rows: BTreeSet<u32> = expected.duplicates.iter().map(|(r, _)| *r).collect();
    dup_rows.extend(&seeded.active);
    let got: BTreeSet<u32> = report.duplicates.iter().map(|r| r.row).collect();
    assert_eq!(got, dup_rows, "duplicate rows");
    assert_eq!(report.duplicates.len(), dup_rows.len(), "one entry per row");
    let got: BTreeSet<u32> = report.restored.iter().map(|r| r.row).collect();
    assert_eq!(got, seeded.deleted, "restored rows");
    let failed: Vec<(u32, &str)> = report
        .failed
        .iter()
        .map(|f| (f.row, f.name.as_str()))
        .collect();
    let want: Vec<(u32, &str)> = expected
        .invalid
        .iter()
        .map(|i| (i.row, i.name.as_str()))
        .collect();
    assert_eq!(failed, want, "failed rows and names, in sheet order");
    for (f, i) in report.failed.iter().zip(&expected.invalid) {
        assert!(
            f.error.contains(i.kind.field().label()),
            "row {}: {:?} should be about {}",
            f.row,
            f.error,
            i.kind.field().label()
        );
    }
    // Credentials: one per created student, nobody else.
    assert_eq!(report.credentials.len(), created.len(), "credentials");
    let names: BTreeMap<&str, usize> =
        report.credentials.iter().fold(BTreeMap::new(), |mut m, c| {
            *m.entry(c.name.as_str()).or_default() += 1;
            m
        });
    let want: BTreeMap<&str, usize> = created.iter().fold(BTreeMap::new(), |mut m, s| {
        *m.entry(s.name.as_str()).or_default() += 1;
        m
    });
    assert_eq!(names, want, "credential names");
    let logins: HashSet<&str> = report
        .credentials
        .iter()
        .map(|c| c.login_id.as_str())
        .collect();
    assert_eq!(
        logins.len(),
        report.credentials.len(),
        "login ids are unique"
    );
    for c in &report.credentials {
        assert_eq!(c.password.len(), credentials::PASSWORD_LEN, "{c:?}");
    }
    Ok(())
}

/// Imports a generated sheet on a standard worker, which must end DONE: the job and its last
/// state.
async fn import_to_done(env: &Env, spec: &WorkbookSpec) -> anyhow::Result<(JobId, State)> {
    let g = generate_students_workbook(spec)?;
    let registry = env.registry();
    let worker = env.standard_worker("w1").spawn();
    let job = env.submit_excel(&registry, g.bytes).await?;
    let last = env.wait_terminal(&job, LONG).await?;
    worker.shutdown().await;
    ensure!(job_status(&last) == Some(JobStatus::Done), "{last:?}");
    Ok((job, last))
}

/// The full result stored with the job (database only).
/// The full result in the database, its sealed credentials opened (as the API does).
async fn full_report(env: &Env, job: &JobId) -> anyhow::Result<ImportReport> {
    let mut full = env
        .db
        .get_ai_result(env.tenant(), job)
        .await?
        .context("a full result in the database")?;
    let obj = full.as_object_mut().context("an object")?;
    assert_eq!(
        obj.get("credentials"),
        Some(&serde_json::json!([])),
        "no clear credentials at rest"
    );
    if let Some(sealed) = obj.remove(SEALED_CREDENTIALS_KEY) {
        let sealed = sealed.as_str().context("sealed text")?;
        let creds = env
            .seal
            .open_credentials(job.as_str(), sealed, i64::MAX)?
            .context("no expiry in the database copy")?;
        obj.insert("credentials".into(), creds);
    }
    Ok(serde_json::from_value(full)?)
}

/// Every student of the tenant verifies with the password the report gave (a sample of them).
async fn check_hashes(env: &Env, report: &ImportReport, sample: usize) -> anyhow::Result<()> {
    let hashes: BTreeMap<String, String> = env.password_hashes().await?.into_iter().collect();
    let step = (report.credentials.len() / sample.max(1)).max(1);
    for c in report.credentials.iter().step_by(step) {
        let h = hashes
            .get(&c.login_id)
            .context("student of the credential")?;
        assert!(
            h.starts_with("$argon2id$v=19$m=4096,t=1,p=1$"),
            "generated passwords get the light setting: {h}"
        );
        assert!(credentials::verify_password(&c.password, h), "{c:?}");
    }
    Ok(())
}

/// No identity twice in the tenant, and as many students as identities.
async fn check_no_duplicate_students(env: &Env, identities: usize) -> anyhow::Result<()> {
    let t = env.tenant();
    let doubled = env
        .sql_int(&format!(
            "SELECT COUNT(*) FROM (SELECT name, parent_phone FROM students WHERE tenant_id = {t} \
             GROUP BY name, parent_phone HAVING COUNT(*) > 1) d"
        ))
        .await?;
    assert_eq!(doubled, 0, "identities with more than one student");
    let n = env
        .sql_int(&format!(
            "SELECT COUNT(*) FROM students WHERE tenant_id = {t}"
        ))
        .await?;
    assert_eq!(n as usize, identities, "students in the tenant");
    Ok(())
}

fn running_steps(states: &[State]) -> Vec<(u8, Percent)> {
    states
        .iter()
        .filter(|s| job_status(s) == Some(JobStatus::Running))
        .filter_map(|s| s.step.as_ref().map(|st| (st.index, s.percent)))
        .collect()
}

async fn issue_2000_sheet(b: Backend) -> anyhow::Result<()> {
    let env = Env::new(b).await?;
    let g = generate_students_workbook(&WorkbookSpec::issue_2000())?;
    let seeded = seed_pre_existing(&env, &g.expected).await?;
    assert!(!seeded.active.is_empty() && !seeded.deleted.is_empty());
    let registry = env.registry();
    let feed = env.subscribe().await?;
    // Submitted (and its PENDING published) before any worker runs. With a worker already
    // waiting, the claim can commit and publish RUNNING before the submitter publishes PENDING;
    // the read model then refuses that PENDING as stale (an older fence) and never shows it —
    // right for a read model that only moves forward, and what a poller sees anyway (the
    // job *is* running). So "the first change is PENDING" holds only when nothing can claim the
    // job before it is published; this test checks the whole progression, so it arranges that.
    let job = env.submit_excel(&registry, g.bytes.clone()).await?;
    let worker = env.standard_worker("w1").spawn();
    let key = env.key(&job);
    // A client polling the progress URL.
    let poller = {
        let (store, key) = (env.store.clone(), key.clone());
        tokio::spawn(async move {
            let mut seen: Vec<State> = Vec::new();
            loop {
                if let Ok(Some(s)) = store.get(&key).await {
                    let end = job_status(&s.state).is_some_and(JobStatus::is_terminal);
                    seen.push(s.state);
                    if end {
                        return seen;
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let changes = watch_until_terminal(feed, key.clone(), LONG).await?;
    let polled = tokio::time::timeout(LONG, poller).await??;
    worker.shutdown().await;

    // The read model ends DONE with a result to fetch.
    let last = changes.last().context("changes")?;
    assert_eq!(job_status(last), Some(JobStatus::Done), "{last:?}");
    assert_eq!(last.percent, Percent::FULL);
    assert_eq!(last.error, None);
    let result = last.result.as_ref().context("a result")?;
    assert!(
        result.full_available,
        "result_url: credentials are only in the full result"
    );

    // Counts and rows, from the full result in the database.
    let report = full_report(&env, &job).await?;
    check_report(&report, &g.expected, &seeded)?;
    check_hashes(&env, &report, 100).await?;
    check_no_duplicate_students(&env, g.expected.unique()).await?;
    let enrolled = env
        .db
        .list_lecture_students(env.tenant(), env.seed.lecture_id)
        .await?;
    assert_eq!(
        enrolled.len(),
        g.expected.unique(),
        "every valid identity is enrolled"
    );

    // The read model holds the public summary (plus the credentials, sealed, when that still
    // fits): inline when it fits, never a password in clear.
    let public = serde_json::to_value(report.without_credentials())?;
    let fits = serde_json::to_vec(&public)?.len() <= 10 * 1024;
    match &result.inline {
        Some(inline) => {
            assert!(fits);
            let mut inline = inline.clone();
            inline.remove(SEALED_CREDENTIALS_KEY);
            assert_eq!(serde_json::Value::Object(inline.clone()), public);
            assert_eq!(inline["credentials"], serde_json::json!([]));
        }
        None => assert!(!fits, "a summary that fits is inline"),
    }
    let raw = env.raw_record(&job).await?;
    for c in &report.credentials {
        assert!(
            !raw.contains(&c.password),
            "a password reached the read model"
        );
    }
    assert!(raw.contains("DONE"), "{raw}");

    // Progress: PENDING, then RUNNING through steps 1..4 with a percent that never goes back.
    assert_eq!(
        job_status(&changes[0]),
        Some(JobStatus::Pending),
        "{:?}",
        changes[0]
    );
    let steps = running_steps(&changes);
    let indices: Vec<u8> = steps.iter().map(|(i, _)| *i).collect();
    assert!(indices.windows(2).all(|w| w[0] <= w[1]), "{indices:?}");
    let distinct: BTreeSet<u8> = indices.iter().copied().collect();
    assert_eq!(distinct, BTreeSet::from([1, 2, 3, 4]), "steps seen");
    assert!(
        indices.iter().filter(|i| **i == 3).count() > 3,
        "enrolling reports per-row progress: {indices:?}"
    );
    for seen in [&changes, &polled] {
        let percents: Vec<u8> = seen
            .iter()
            .filter(|s| job_status(s) == Some(JobStatus::Running))
            .map(|s| s.percent.get())
            .collect();
        assert!(
            percents.windows(2).all(|w| w[0] <= w[1]),
            "percent went back: {percents:?}"
        );
    }
    assert_eq!(
        job_status(polled.last().context("polled")?),
        Some(JobStatus::Done)
    );
    Ok(())
}
both!(issue_2000_sheet);

async fn killed_mid_import(b: Backend) -> anyhow::Result<()> {
    let env = Env::new(b).await?;
    let g = generate_students_workbook(&WorkbookSpec::issue_2000())?;
    let registry = env.registry();
    // The reaper's RETRYING goes through the outbox: a relay publishes it, as in production.
    let relay_stop = tokio_util::sync::CancellationToken::new();
    let relay = tokio::spawn(
        jobpulse_sync::Relay::new(env.db.clone(), env.store.clone()).run(relay_stop.clone()),
    );
    // Short, since the rescue waits for it to run out after the kill — but not so short that a
    // slow database makes the doomed worker give the job up before it is killed (at 1.5 s a
    // loaded CI machine took it through five lost attempts to FAILED).
    let short = env.config("doomed").with_lease(Duration::from_secs(5));
    let first = env.worker(registry.clone(), short).spawn();
    let job = env.submit_excel(&registry, g.bytes.clone()).await?;

    env.wait_for(&job, LONG, "enrolling under way", |s| {
        s.step
            .as_ref()
            .is_some_and(|st| st.index == 3 && st.percent.get() >= 15)
    })
    .await?;
    first.kill().await;
    // Let anything the abort left in flight settle, then look at what attempt 1 recorded.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = env.db.import_rows(&job).await?;
    let total = g.expected.data_rows as usize;
    assert!(
        !before.is_empty() && before.len() < total,
        "killed mid-import: {} of {total} rows recorded",
        before.len()
    );
    let state = env.state(&job).await?.context("state")?;
    assert_eq!(
        job_status(&state),
        Some(JobStatus::Running),
        "nobody wrote an end"
    );

    let second = env.standard_worker("rescuer").spawn();
    let last = env.wait_terminal(&job, LONG).await?;
    second.shutdown().await;
    relay_stop.cancel();
    relay.await?;

    assert_eq!(job_status(&last), Some(JobStatus::Done), "{last:?}");
    assert_eq!(last.attempt, Some(2), "the second attempt finished the job");
    let report = full_report(&env, &job).await?;
    let none = Seeded {
        active: BTreeSet::new(),
        deleted: BTreeSet::new(),
    };
    check_report(&report, &g.expected, &none)?;
    check_no_duplicate_students(&env, g.expected.unique()).await?;
    check_hashes(&env, &report, 50).await?;
    // What attempt 1 created is still reported, with the same credentials.
    let by_login: BTreeMap<&str, (&str, &str)> = report
        .credentials
        .iter()
        .map(|c| (c.login_id.as_str(), (c.name.as_str(), c.password.as_str())))
        .collect();
    let mut carried = 0;
    for r in before
        .iter()
        .filter(|r| r.outcome == ImportOutcome::Created)
    {
        let login = r.login_id.as_deref().context("login id")?;
        let (name, password) = by_login
            .get(login)
            .context("attempt 1's student reported")?;
        assert_eq!(Some(*name), r.name.as_deref());
        let sealed = r.initial_password.as_deref().context("a ledger password")?;
        assert!(sealed.starts_with("sealed:v1:"), "sealed at rest: {sealed}");
        assert_eq!(*password, env.seal.open_text(job.as_str(), sealed)?);
        carried += 1;
    }
    assert!(carried > 0, "attempt 1 had created students");
    Ok(())
}
both!(killed_mid_import);

async fn large_result_goes_through_result_url(b: Backend) -> anyhow::Result<()> {
    let env = Env::new(b).await?;
    // One student repeated 600 times: a 600-entry `duplicates` list.
    let spec = WorkbookSpec {
        seed: 7,
        duplicates: 600,
        ..WorkbookSpec::valid_rows(1)
    };
    let (job, last) = import_to_done(&env, &spec).await?;
    let report = full_report(&env, &job).await?;
    assert_eq!(report.created, 1);
    assert_eq!(report.duplicates.len(), 600);
    let summary = serde_json::to_vec(&report.without_credentials())?;
    assert!(
        summary.len() > 10 * 1024,
        "the summary alone is {} bytes",
        summary.len()
    );
    let result = last.result.context("a result")?;
    assert!(result.full_available);
    assert_eq!(result.inline, None, "too large to inline");
    let raw = env.raw_record(&job).await?;
    assert!(
        !raw.contains("duplicates"),
        "no partial inline result: {raw}"
    );
    Ok(())
}
both!(large_result_goes_through_result_url);

/// After the retention period the initial passwords are gone from the ledger and the stored
/// result (the result says so); the accounts keep working; a younger job is left alone.
async fn credentials_are_purged_after_the_retention(b: Backend) -> anyhow::Result<()> {
    let env = Env::new(b).await?;
    let spec = WorkbookSpec {
        seed: 11,
        ..WorkbookSpec::valid_rows(5)
    };
    let (job, _) = import_to_done(&env, &spec).await?;
    let before = full_report(&env, &job).await?;
    assert_eq!(before.credentials.len(), 5);
    let in_ledger = "SELECT COUNT(*) FROM import_rows WHERE initial_password IS NOT NULL";
    assert_eq!(env.sql_int(in_ledger).await?, 5);

    // Ended just now: a day's retention keeps everything.
    let day = Duration::from_secs(24 * 3600);
    assert_eq!(env.db.purge_credentials(day, 100).await?, 0);
    assert_eq!(full_report(&env, &job).await?.credentials.len(), 5);

    tokio::time::sleep(Duration::from_millis(20)).await;
    let keep = Duration::from_millis(10);
    assert_eq!(env.db.purge_credentials(keep, 100).await?, 1);
    assert_eq!(env.sql_int(in_ledger).await?, 0);
    let full = env
        .db
        .get_ai_result(env.tenant(), &job)
        .await?
        .context("result")?;
    assert_eq!(full.get("credentials"), None, "{full}");
    assert_eq!(full["credentials_purged"], true);
    assert_eq!(full["created"], 5, "the rest of the result stays");
    // The students' own password hashes are not touched: the handed-out passwords still work.
    check_hashes(&env, &before, 5).await?;
    assert_eq!(env.db.purge_credentials(keep, 100).await?, 0, "done once");
    Ok(())
}
both!(credentials_are_purged_after_the_retention);
