//! Peak memory of parsing one workbook (no database): the parser's share of an import's memory.
//! The workbook is generated, written to a temporary file, and parsed by a fresh run of this
//! program, which prints its resident high-water mark over its resident memory before parsing.
//!
//! Run: `cargo run --release -p jobpulse-worker --features testing --example import_memory -- <workload>`
//! with `<workload>` one of `rows` (20 000 students), `huge-cell` (one 120 MB cell),
//! `repeated` (a 4 000-char string in 200 000 cells), `strings` (200 000 shared strings of 20
//! characters), `declared` (a shared-strings table declaring 10^13 strings), `cells` (500 000
//! number cells).

#![allow(clippy::print_stdout)]

use std::time::Instant;

use anyhow::{Context, bail};
use jobpulse_worker::excel::import::{Limits, import_xlsx};
use jobpulse_worker::excel::testing::hostile::Hostile;
use jobpulse_worker::excel::testing::{WorkbookSpec, generate_students_workbook};

fn status_kib(field: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string("/proc/self/status")?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .context("no such field")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .context("not a number")
}

fn workbook(name: &str) -> anyhow::Result<Vec<u8>> {
    Ok(match name {
        "rows" => generate_students_workbook(&WorkbookSpec::valid_rows(20_000))?.bytes,
        "huge-cell" => Hostile::HugeCell { bytes: 120_000_000 }.workbook(),
        "repeated" => Hostile::RepeatedLongString {
            chars: 4_000,
            rows: 20_000,
            cols: 10,
        }
        .workbook(),
        "strings" => Hostile::ManyStrings {
            // With the two header strings: the most the limit allows.
            count: 199_998,
            chars: 20,
        }
        .workbook(),
        "declared" => Hostile::DeclaredCount {
            count: 10_000_000_000_000,
        }
        .workbook(),
        "cells" => Hostile::ManyCells {
            // 499 900 cells and the header: just under the limit.
            rows: 4_999,
            cols: 100,
        }
        .workbook(),
        other => bail!(
            "unknown workload {other:?} (rows, huge-cell, repeated, strings, declared, cells)"
        ),
    })
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "rows".to_owned());
    if name == "--parse" {
        // The child: parse the file, report.
        let path = args.next().context("--parse <file>")?;
        let bytes = std::fs::read(&path)?;
        let before = status_kib("VmRSS")?;
        std::fs::write("/proc/self/clear_refs", "5")?;
        let t = Instant::now();
        let outcome = match import_xlsx(&bytes, &Limits::default(), |_| {}) {
            Ok(i) => format!("{} rows", i.rows.len()),
            Err(e) => format!("refused: {e}"),
        };
        let peak = status_kib("VmHWM")?;
        println!(
            "file {:.2} MiB; parse peak +{:.1} MiB over {:.1} MiB in {:.2} s; {outcome}",
            bytes.len() as f64 / 1048576.0,
            peak.saturating_sub(before) as f64 / 1024.0,
            before as f64 / 1024.0,
            t.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let bytes = workbook(&name)?;
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), &bytes)?;
    let status = std::process::Command::new(std::env::current_exe()?)
        .arg("--parse")
        .arg(file.path())
        .status()?;
    if !status.success() {
        bail!("the parsing run failed: {status}");
    }
    Ok(())
}
