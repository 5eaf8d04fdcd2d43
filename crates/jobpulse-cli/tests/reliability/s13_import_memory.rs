//! Scenario 13 — the memory of spreadsheet imports (issue 15, finding 8: one 124 KB workbook
//! whose cell held 120 MB of text took a worker from 43 MB to 797 MB).
//!
//! Each workload runs on a fresh `jobpulse worker ai` (default concurrency, 2 jobs at once): the
//! worker's resident memory is read when it is idle, its high-water mark is reset
//! (`/proc/<pid>/clear_refs`), the workbooks are submitted, and once every job has ended the
//! high-water mark (`VmHWM`) is read again; a sampler also records the peak of anonymous memory
//! (`RssAnon`, the heap: the binary's own pages are file-backed).
//!
//! Pass: every job ends (DONE, or refused with a message naming the limit), and the worker's
//! peak over idle stays within the bound per job the issue asks — 64 MiB plus the file's size —
//! times the jobs that ran at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jobpulse_worker::excel::testing::hostile::Hostile;

use crate::figure;
use crate::harness::load;
use crate::harness::procs::Proc;
use crate::harness::{Cluster, eventually, scaled};

const MIB: u64 = 1024 * 1024;
/// The bound per import job, over the file's size.
const PER_JOB: u64 = 64 * MIB;

struct Workload {
    name: &'static str,
    files: Vec<Vec<u8>>,
    /// The jobs must end DONE (else: refused, naming a limit).
    done: bool,
}

/// A field of `/proc/<pid>/status`, in bytes.
fn status(pid: u32, field: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = text
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
        .ok_or_else(|| anyhow::anyhow!("no {field} in /proc/{pid}/status"))?;
    let kib: u64 = line[field.len() + 1..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kib * 1024)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s13_import_memory_stays_bounded_per_job() -> anyhow::Result<()> {
    let c = Cluster::start().await?;
    let seed = c.tenant("mem").await?;
    let token = c.token(seed.tenant_id, "staff");
    let server = c.serve(&[]).await?;
    let api = server.api.clone();
    let pg = c.pg();

    // The 20 000 rows with JOBPULSE_RELIABILITY_FULL=1 (about 3 minutes in a debug
    // build); 5 000 in CI.
    let students = scaled(5_000, 20_000);
    let (rows, _) = load::workbook(students as u32, 13)?;
    // 499 900 cells and the header: just under the cell limit.
    let cells = Hostile::ManyCells {
        rows: 4_999,
        cols: 100,
    }
    .workbook();
    let workloads = vec![
        Workload {
            name: "students",
            files: vec![rows],
            done: true,
        },
        Workload {
            name: "one 120 MB cell",
            files: vec![Hostile::HugeCell { bytes: 120_000_000 }.workbook()],
            done: false,
        },
        Workload {
            name: "a 4 000-char string in 200 000 cells",
            files: vec![
                Hostile::RepeatedLongString {
                    chars: 4_000,
                    rows: 20_000,
                    cols: 10,
                }
                .workbook(),
            ],
            done: false,
        },
        Workload {
            name: "199 998 shared strings of 20 characters",
            files: vec![
                Hostile::ManyStrings {
                    count: 199_998,
                    chars: 20,
                }
                .workbook(),
            ],
            done: true,
        },
        Workload {
            name: "a table declaring 10^13 strings",
            files: vec![
                Hostile::DeclaredCount {
                    count: 10_000_000_000_000,
                }
                .workbook(),
            ],
            done: false,
        },
        Workload {
            name: "499 900 number cells, twice at once",
            files: vec![cells.clone(), cells],
            done: true,
        },
    ];

    for w in workloads {
        let cmd = c.command(&["worker", "ai", "--lease", "30s"]);
        let mut worker = Proc::spawn("worker-ai", cmd, &c.log_path("ai-mem"))?;
        worker
            .wait_for_log("AI worker started", Duration::from_secs(30))
            .await?;
        // Let start-up allocations settle, then take the idle figure and reset the peak.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let pid = worker.pid();
        let idle = status(pid, "VmRSS")?;
        let idle_anon = status(pid, "RssAnon")?;
        std::fs::write(format!("/proc/{pid}/clear_refs"), "5")?;

        let started = Instant::now();
        let mut ids = Vec::new();
        for f in &w.files {
            ids.push(api.submit_excel(&token, seed.lecture_id, f.clone()).await?);
        }
        let anon_peak = Arc::new(AtomicU64::new(0));
        let sampler = tokio::spawn({
            let peak = anon_peak.clone();
            async move {
                while let Ok(anon) = status(pid, "RssAnon") {
                    peak.fetch_max(anon, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        });
        let pg2 = pg.clone();
        let ids2 = ids.clone();
        eventually(
            &format!("the {} jobs end", w.name),
            Duration::from_secs(420),
            Duration::from_millis(500),
            move || {
                let (pg, ids) = (pg2.clone(), ids2.clone());
                async move {
                    let ended: i64 = sqlx::query_scalar(
                        "SELECT count(*) FROM ai_jobs WHERE job_id = ANY($1) \
                         AND status NOT IN ('PENDING', 'RUNNING', 'RETRYING')",
                    )
                    .bind(&ids)
                    .fetch_one(&pg)
                    .await?;
                    Ok(ended == ids.len() as i64)
                }
            },
        )
        .await?;
        let took = started.elapsed();
        let hwm = status(pid, "VmHWM")?;
        let after = status(pid, "VmRSS")?;
        sampler.abort();
        let anon_peak = anon_peak.load(Ordering::Relaxed);
        worker.terminate(Duration::from_secs(10));

        let outcomes: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT status, error_message FROM ai_jobs WHERE job_id = ANY($1)")
                .bind(&ids)
                .fetch_all(&pg)
                .await?;
        let file = w.files.iter().map(|f| f.len() as u64).max().unwrap_or(0);
        let jobs = w.files.len() as u64;
        let bound = jobs * (PER_JOB + file);
        let peak = hwm.saturating_sub(idle);
        figure!(
            "s13 {}{}: file {:.2} MiB × {jobs}; worker idle {:.1} MiB; peak over idle {:.1} MiB \
             (heap {:.1} MiB over idle; bound {:.1} MiB); RSS after {:.1} MiB; {:?} in {:.1} s",
            w.name,
            if w.name == "students" {
                format!(" ({students})")
            } else {
                String::new()
            },
            mib(file),
            mib(idle),
            mib(peak),
            mib(anon_peak.saturating_sub(idle_anon)),
            mib(bound),
            mib(after),
            outcomes,
            took.as_secs_f64()
        );
        for (status, error) in &outcomes {
            if w.done {
                anyhow::ensure!(
                    status == "DONE",
                    "{}: a job ended {status} ({error:?})",
                    w.name
                );
            } else {
                let e = error.as_deref().unwrap_or_default();
                anyhow::ensure!(
                    status == "REJECTED_BAD_INPUT" && (e.contains("MB") || e.contains('자')),
                    "{}: expected a refusal naming the limit, got {status} ({e})",
                    w.name
                );
            }
        }
        anyhow::ensure!(
            peak <= bound,
            "{}: the worker's peak rose {:.1} MiB over idle, over the bound of {:.1} MiB",
            w.name,
            mib(peak),
            mib(bound)
        );
    }
    Ok(())
}
