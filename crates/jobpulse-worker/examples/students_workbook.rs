//! Writes a sample students workbook for trying the excel import by hand:
//!
//! ```sh
//! cargo run -p jobpulse-worker --features testing --example students_workbook -- students.xlsx [rows]
//! ```
//!
//! Korean headers, a title row, a few duplicates, blank and invalid rows — the import reports
//! each of them.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "students.xlsx".into());
    let rows: u32 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(20);
    let mut spec = jobpulse_worker::excel::testing::WorkbookSpec::valid_rows(rows);
    spec.duplicates = (rows / 10).max(1);
    spec.blank = 1;
    spec.bad_parent_phone = 1;
    spec.missing_name = 1;
    spec.title_rows = 1;
    let generated = jobpulse_worker::excel::testing::generate_students_workbook(&spec)?;
    std::fs::write(&path, &generated.bytes)?;
    eprintln!(
        "wrote {path}: {} data rows ({} valid students, {} duplicates, {} invalid, {} blank)",
        spec.data_rows(),
        rows,
        spec.duplicates,
        spec.bad_parent_phone + spec.missing_name,
        spec.blank
    );
    Ok(())
}
