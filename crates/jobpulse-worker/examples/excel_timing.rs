//! One-shot wall-clock figures for the excel import, for a report: hashing 2 000 generated
//! passwords (1 thread and all cores; the OWASP setting beside it) and parsing the 2 000-row and
//! a 10 000-row sheet. The benchmark (`benches/excel.rs`) carries the comparisons; this answers "how long does a
//! whole import's worth take on this machine".
//!
//! Run: `cargo run --release -p jobpulse-worker --example excel_timing`.

#![allow(clippy::print_stdout)]

use std::num::NonZeroUsize;
use std::time::Instant;

use jobpulse_worker::excel::credentials;
use jobpulse_worker::excel::import::{self, Limits};
use jobpulse_worker::excel::testing::{HeaderStyle, WorkbookSpec, generate_students_workbook};

fn main() -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN);
    let passwords = (0..2_000)
        .map(|_| credentials::generate_password())
        .collect::<Result<Vec<_>, _>>()?;
    for threads in [NonZeroUsize::MIN, cores] {
        let t = Instant::now();
        let hashes = credentials::hash_passwords(&passwords, threads, &|_| {})?;
        println!(
            "hash 2000 generated passwords (m=4096,t=1), {threads} thread(s): {:.2} s ({} hashes)",
            t.elapsed().as_secs_f64(),
            hashes.len()
        );
    }
    // The OWASP setting chosen passwords get, on one thread, for comparison (200 hashes, scaled).
    let t = Instant::now();
    for p in &passwords[..200] {
        credentials::hash_password(p.as_str())?;
    }
    println!(
        "hash 2000 passwords at the OWASP setting (m=19456,t=2), 1 thread: {:.2} s (200 measured, x10)",
        t.elapsed().as_secs_f64() * 10.0
    );

    let ten_thousand = WorkbookSpec {
        seed: 10_000,
        duplicates: 200,
        bad_parent_phone: 100,
        blank: 50,
        title_rows: 1,
        header_style: HeaderStyle::Random,
        shuffle_columns: true,
        numeric_phones: true,
        ..WorkbookSpec::valid_rows(9_700)
    };
    for (label, spec) in [
        ("2000", WorkbookSpec::issue_2000()),
        ("10000", ten_thousand),
    ] {
        let g = generate_students_workbook(&spec)?;
        let mut best = f64::MAX;
        let mut last = None;
        for _ in 0..5 {
            let t = Instant::now();
            let r = import::import_xlsx(&g.bytes, &Limits::default(), |_| {})?;
            best = best.min(t.elapsed().as_secs_f64());
            last = Some(r);
        }
        let r = last.ok_or_else(|| anyhow::anyhow!("no run"))?;
        println!(
            "import {label}-row sheet ({} KiB): best of 5 {:.1} ms; {} rows, {} valid, {} failed",
            g.bytes.len() / 1024,
            best * 1e3,
            r.rows.len(),
            r.students().count(),
            r.failed().count()
        );
    }
    Ok(())
}
