//! The AI worker end to end: real database (PostgreSQL or SQLite), real read model (Redis or
//! in-process), real media storage, real .xlsx files; what a polling client sees.
//!
//! - `import`: the 2 000-row sheet, a worker killed mid-import, a result over 10 KB;
//! - `errors`: bad input, a job type without a handler, a transient error retried, a timeout;
//! - `export`: the attendance workbook;
//! - `retention`: inputs and initial passwords of ended jobs;
//! - `claim_loop`: the claim loop with a task kind of the test's own (panics, shutdown grace).

mod claim_loop;
mod errors;
mod export;
mod helpers;
mod import;
mod retention;
