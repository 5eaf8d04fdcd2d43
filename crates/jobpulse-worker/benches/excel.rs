//! Parse and hash costs of the excel import, each beside a baseline measured in the same run.
//!
//! - `parse/*`: our whole import (stream cells, find the header, validate every row) against
//!   calamine's plain `worksheet_range` read of the same bytes, which does no validation.
//! - `hash/*`: one Argon2id hash with our parameters (OWASP's minimum for chosen passwords, the
//!   light setting for generated ones) against the cheapest Argon2 parameters (the floor of the
//!   algorithm itself) and OWASP's equal-strength low-memory alternative.
//!
//! Run: `cargo bench -p jobpulse-worker --bench excel`.

use std::hint::black_box;
use std::io::Cursor;

use argon2::password_hash::PasswordHasher;
use argon2::{Algorithm, Argon2, Params, Version};
use calamine::{Reader, Xlsx};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use jobpulse_worker::excel::credentials;
use jobpulse_worker::excel::import::{self, Limits};
use jobpulse_worker::excel::testing::{HeaderStyle, WorkbookSpec, generate_students_workbook};

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    group.sample_size(10);
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
        let bytes = generate_students_workbook(&spec).expect("generates").bytes;
        group.throughput(Throughput::Elements(u64::from(
            spec.data_rows() + spec.blank,
        )));
        group.bench_with_input(
            BenchmarkId::new("baseline_calamine_range", label),
            &bytes,
            |b, bytes| {
                b.iter(|| {
                    let mut book: Xlsx<_> =
                        Xlsx::new(Cursor::new(bytes.as_slice())).expect("opens");
                    black_box(book.worksheet_range_at(0).expect("a sheet").expect("reads"))
                })
            },
        );
        group.bench_with_input(BenchmarkId::new("read_xlsx", label), &bytes, |b, bytes| {
            b.iter(|| black_box(import::read_xlsx(bytes, &Limits::default(), &mut |_| {})))
        });
        group.bench_with_input(
            BenchmarkId::new("import_xlsx", label),
            &bytes,
            |b, bytes| b.iter(|| black_box(import::import_xlsx(bytes, &Limits::default(), |_| {}))),
        );
    }
    group.finish();
}

fn hash(c: &mut Criterion) {
    let mut group = c.benchmark_group("hash");
    group.sample_size(10);
    let password = credentials::generate_password().expect("os rng");
    let salt = [7u8; 16];
    let with = |m, t| {
        Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(m, t, 1, None).expect("params"),
        )
    };
    let floor = with(8, 1);
    let low_memory = with(7 * 1024, 5);
    group.bench_function("baseline_argon2id_m8_t1", |b| {
        b.iter(|| black_box(floor.hash_password_with_salt(password.as_str().as_bytes(), &salt)))
    });
    group.bench_function("owasp_alt_m7168_t5", |b| {
        b.iter(|| {
            black_box(low_memory.hash_password_with_salt(password.as_str().as_bytes(), &salt))
        })
    });
    group.bench_function("ours_m19456_t2", |b| {
        b.iter(|| black_box(credentials::hash_password(password.as_str())))
    });
    group.bench_function("generated_m4096_t1", |b| {
        b.iter(|| black_box(credentials::hash_generated_password(&password)))
    });
    group.finish();
}

criterion_group!(benches, parse, hash);
criterion_main!(benches);
