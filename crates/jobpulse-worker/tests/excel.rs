//! The excel import, export and credentials, end to end on real .xlsx bytes: header variants,
//! column orders, title rows, number cells, every row error, blank rows, the 2 000-row sheet of
//! the issue, hostile input, and the export read back with calamine.

use std::collections::{BTreeMap, HashSet};
use std::io::Cursor;
use std::num::NonZeroUsize;

use calamine::{Data, Reader, Xlsx};
use jobpulse_worker::excel::Phone;
use jobpulse_worker::excel::credentials::{
    self, DETERMINISTIC_ATTEMPTS, LOGIN_ALPHABET, PASSWORD_ALPHABET, PASSWORD_LEN,
};
use jobpulse_worker::excel::export::{self, SessionInfo, StudentInfo};
use jobpulse_worker::excel::import::{
    self, Cell, Field, Grid, Import, ImportError, Limits, Phase, Progress, RowProblem,
};
use jobpulse_worker::excel::testing::{
    Expected, HeaderStyle, InvalidKind, WorkbookSpec, generate_students_workbook,
};
use proptest::prelude::*;
use rust_xlsxwriter::Workbook;

/// A cell to write in a hand-made sheet.
#[derive(Clone, Copy)]
enum V<'a> {
    S(&'a str),
    N(f64),
    Empty,
}
use V::{Empty, N, S};

/// An .xlsx whose first sheet holds `rows` from A1.
fn xlsx(rows: &[Vec<V<'_>>]) -> Vec<u8> {
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    for (r, row) in rows.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            let (r, c) = (r as u32, c as u16);
            match v {
                S(s) => {
                    sheet.write_string(r, c, *s).expect("writes");
                }
                N(n) => {
                    sheet.write_number(r, c, *n).expect("writes");
                }
                Empty => {}
            }
        }
    }
    book.save_to_buffer().expect("saves")
}

fn import(bytes: &[u8]) -> Result<Import, ImportError> {
    import::import_xlsx(bytes, &Limits::default(), |_| {})
}

fn must_import(bytes: &[u8]) -> Import {
    import(bytes).unwrap_or_else(|e| panic!("import failed: {e}"))
}

/// Checks an import against a generator's expectation, field by field.
fn assert_matches(got: &Import, want: &Expected) {
    assert_eq!(got.header.row, want.header_row, "header row");
    assert_eq!(got.header.headers, want.headers, "header texts");
    assert_eq!(got.rows.len() as u32, want.data_rows, "data rows");
    assert_eq!(got.blank_rows, want.blank_rows, "blank rows");

    let students: Vec<_> = got.students().collect();
    assert_eq!(students.len(), want.students.len(), "valid rows");
    for (s, w) in students.iter().zip(&want.students) {
        assert_eq!(s.row, w.row);
        assert_eq!(s.name, w.name, "row {}", w.row);
        assert_eq!(s.parent_phone.as_str(), w.parent_phone, "row {}", w.row);
        assert_eq!(
            s.phone.as_ref().map(Phone::as_str),
            w.phone.as_deref(),
            "row {}",
            w.row
        );
        assert_eq!(s.school, w.school, "row {}", w.row);
        assert_eq!(s.grade, w.grade, "row {}", w.row);
    }

    let failed: Vec<_> = got.failed().collect();
    assert_eq!(failed.len(), want.invalid.len(), "invalid rows");
    for (f, w) in failed.iter().zip(&want.invalid) {
        assert_eq!(f.row, w.row);
        assert_eq!(f.name, w.name, "row {}", w.row);
        assert_eq!(f.problems.len(), 1, "row {}: {:?}", w.row, f.problems);
        assert_eq!(f.problems[0].field(), w.kind.field(), "row {}", w.row);
        let missing = matches!(
            f.problems[0],
            RowProblem::NameMissing | RowProblem::ParentPhoneMissing
        );
        let want_missing = matches!(
            w.kind,
            InvalidKind::MissingName | InvalidKind::MissingParentPhone
        );
        assert_eq!(missing, want_missing, "row {}: {:?}", w.row, f.problems);
        assert!(!f.error.is_empty());
    }

    let dedup = got.dedup();
    let dups: Vec<(u32, u32)> = dedup.duplicates.iter().map(|(s, r)| (s.row, *r)).collect();
    assert_eq!(dups, want.duplicates, "duplicates");
    assert_eq!(dedup.unique.len(), want.unique(), "unique students");
}

#[test]
fn header_variants_are_recognised_in_real_sheets() {
    let variants: &[(&str, Field)] = &[
        ("이름", Field::Name),
        ("성명", Field::Name),
        ("학생명", Field::Name),
        ("학생 이름", Field::Name),
        ("Name", Field::Name),
        ("student name", Field::Name),
        ("학생 전화번호", Field::Phone),
        ("학생연락처", Field::Phone),
        ("학생 휴대폰", Field::Phone),
        ("학생 핸드폰", Field::Phone),
        ("연락처", Field::Phone),
        ("phone", Field::Phone),
        ("Mobile", Field::Phone),
        ("Student Phone", Field::Phone),
        ("부모 전화번호", Field::ParentPhone),
        ("학부모 연락처", Field::ParentPhone),
        ("보호자 전화번호", Field::ParentPhone),
        ("부모님 핸드폰", Field::ParentPhone),
        ("학부모", Field::ParentPhone),
        ("Parent phone", Field::ParentPhone),
        ("Guardian Mobile", Field::ParentPhone),
        ("학교", Field::School),
        ("School name", Field::School),
        ("학년", Field::Grade),
        ("Grade", Field::Grade),
        ("YEAR", Field::Grade),
    ];
    for (header, field) in variants {
        // The variant under test replaces the canonical header of its field.
        let mut headers = ["이름", "학생 전화번호", "부모 전화번호", "학교", "학년"];
        let at = Field::ALL.iter().position(|f| f == field).expect("a field");
        headers[at] = header;
        let bytes = xlsx(&[
            headers.iter().map(|h| S(h)).collect(),
            vec![
                S("홍길동"),
                S("010-1111-2222"),
                S("010-3333-4444"),
                S("서울중"),
                N(3.0),
            ],
        ]);
        let got = must_import(&bytes);
        assert_eq!(got.header.column(*field), Some(at as u32), "{header}");
        assert!(
            got.header.ignored.is_empty(),
            "{header}: {:?}",
            got.header.ignored
        );
        let s = got
            .students()
            .next()
            .unwrap_or_else(|| panic!("{header}: {:?}", got.rows));
        assert_eq!(s.name, "홍길동");
        assert_eq!(s.phone.as_ref().map(Phone::as_str), Some("010-1111-2222"));
        assert_eq!(s.parent_phone.as_str(), "010-3333-4444");
        assert_eq!(s.school.as_deref(), Some("서울중"));
        assert_eq!(s.grade.as_deref(), Some("3"));
    }
}

#[test]
fn unknown_and_repeated_headers_are_reported_as_ignored() {
    let bytes = xlsx(&[
        vec![
            S("번호"),
            S("성명"),
            S("비고"),
            S("보호자 연락처"),
            S("이름"),
            S("보호자 이름"),
        ],
        vec![
            N(1.0),
            S("김하나"),
            S("메모"),
            S("01012345678"),
            S("다른 이름"),
            S("김엄마"),
        ],
    ]);
    let got = must_import(&bytes);
    assert_eq!(got.header.column(Field::Name), Some(1));
    assert_eq!(got.header.column(Field::ParentPhone), Some(3));
    assert_eq!(got.header.ignored, ["번호", "비고", "이름", "보호자 이름"]);
    let s = got.students().next().expect("one student");
    assert_eq!(
        (s.name.as_str(), s.parent_phone.as_str()),
        ("김하나", "010-1234-5678")
    );
}

#[test]
fn column_order_does_not_matter() {
    for seed in 0..12 {
        for style in [
            HeaderStyle::Canonical,
            HeaderStyle::English,
            HeaderStyle::Random,
        ] {
            let spec = WorkbookSpec {
                seed,
                shuffle_columns: true,
                extra_columns: seed % 2 == 0,
                header_style: style,
                numeric_phones: seed % 3 == 0,
                ..WorkbookSpec::valid_rows(30)
            };
            let g = generate_students_workbook(&spec).expect("generates");
            assert_matches(&must_import(&g.bytes), &g.expected);
        }
    }
}

#[test]
fn title_rows_above_the_header_are_skipped() {
    for titles in 0..=4 {
        let spec = WorkbookSpec {
            seed: 7 + u64::from(titles),
            title_rows: titles,
            ..WorkbookSpec::valid_rows(10)
        };
        let g = generate_students_workbook(&spec).expect("generates");
        let got = must_import(&g.bytes);
        assert_eq!(got.header.row, g.expected.header_row);
        assert_matches(&got, &g.expected);
    }
    // A header below the first five non-blank rows is not looked for.
    let mut rows: Vec<Vec<V<'_>>> = (0..5).map(|_| vec![S("제목")]).collect();
    rows.push(vec![S("이름"), S("부모 전화번호")]);
    rows.push(vec![S("홍길동"), S("010-1234-5678")]);
    match import(&xlsx(&rows)) {
        Err(ImportError::MissingColumns {
            missing,
            found_headers,
        }) => {
            assert_eq!(missing, [Field::Name, Field::ParentPhone]);
            assert_eq!(found_headers, ["제목"]);
        }
        other => panic!("expected MissingColumns, got {other:?}"),
    }
}

#[test]
fn number_cells_become_phones_and_texts() {
    let bytes = xlsx(&[
        vec![
            S("이름"),
            S("학생 전화번호"),
            S("부모 전화번호"),
            S("학년"),
            S("학교"),
        ],
        vec![S("가"), N(1012345678.0), N(1098765432.0), N(2.0), N(7.0)],
        vec![S("나"), Empty, N(111234567.0), N(2.5), Empty],
        vec![N(1234.0), Empty, N(1012341234.0), Empty, Empty],
        vec![S("라"), N(12345.0), N(-1012345678.0), Empty, Empty],
    ]);
    let got = must_import(&bytes);
    let s: Vec<_> = got.students().collect();
    assert_eq!(s.len(), 3);
    assert_eq!(
        s[0].phone.as_ref().map(Phone::as_str),
        Some("010-1234-5678")
    );
    assert_eq!(s[0].parent_phone.as_str(), "010-9876-5432");
    assert_eq!(s[0].grade.as_deref(), Some("2"));
    assert_eq!(s[0].school.as_deref(), Some("7"));
    assert_eq!(s[1].parent_phone.as_str(), "011-123-4567");
    assert_eq!(s[1].grade.as_deref(), Some("2.5"));
    assert_eq!(
        s[2].name, "1234",
        "a number in the name column is read as text"
    );
    let f: Vec<_> = got.failed().collect();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].row, 5);
    assert_eq!(
        f[0].problems,
        [
            RowProblem::ParentPhoneInvalid("-1012345678".into()),
            RowProblem::PhoneInvalid("12345".into())
        ]
    );
}

#[test]
fn every_row_error() {
    let long_name = "가".repeat(51);
    let max_name = "가".repeat(50);
    let long_school = "학".repeat(101);
    let long_grade = "1".repeat(21);
    let bytes = xlsx(&[
        vec![
            S("이름"),
            S("학생 전화번호"),
            S("부모 전화번호"),
            S("학교"),
            S("학년"),
        ],
        vec![Empty, Empty, S("010-1234-5678")], // 2: name missing
        vec![S(&long_name), Empty, S("010-1234-5678")], // 3: name too long
        vec![S("탭\t이름"), Empty, S("010-1234-5678")], // 4: control character
        vec![S("부모없음"), S("010-1111-2222")], // 5: parent phone missing
        vec![S("집전화"), Empty, S("02-123-4567")], // 6: landline parent phone
        vec![S("학생폰"), S("010-12"), S("010-1234-5678")], // 7: bad student phone
        vec![S("학교"), Empty, S("010-1234-5678"), S(&long_school)], // 8
        vec![S("학년"), Empty, S("010-1234-5678"), Empty, S(&long_grade)], // 9
        vec![Empty, S("abc"), S("없음")],       // 10: three problems at once
        vec![S(&max_name), Empty, S("010-1234-5678")], // 11: 50 characters is fine
    ]);
    let got = must_import(&bytes);
    let problems: BTreeMap<u32, Vec<RowProblem>> =
        got.failed().map(|e| (e.row, e.problems.clone())).collect();
    let want: BTreeMap<u32, Vec<RowProblem>> = [
        (2, vec![RowProblem::NameMissing]),
        (3, vec![RowProblem::NameTooLong]),
        (4, vec![RowProblem::NameInvalid("탭 이름".into())]),
        (5, vec![RowProblem::ParentPhoneMissing]),
        (
            6,
            vec![RowProblem::ParentPhoneInvalid("02-123-4567".into())],
        ),
        (7, vec![RowProblem::PhoneInvalid("010-12".into())]),
        (8, vec![RowProblem::SchoolInvalid]),
        (9, vec![RowProblem::GradeInvalid]),
        (
            10,
            vec![
                RowProblem::NameMissing,
                RowProblem::ParentPhoneInvalid("없음".into()),
                RowProblem::PhoneInvalid("abc".into()),
            ],
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(problems, want);
    let ok: Vec<u32> = got.students().map(|s| s.row).collect();
    assert_eq!(ok, [11]);

    let by_row = |r: u32| got.failed().find(|e| e.row == r).expect("row failed");
    assert_eq!(by_row(2).name, "");
    assert_eq!(by_row(3).name.chars().count(), 51);
    assert_eq!(
        by_row(4).name,
        "탭 이름",
        "control characters are blanked in the report"
    );
    assert_eq!(by_row(5).error, "부모 전화번호가 비어 있습니다");
    assert_eq!(
        by_row(10).error,
        "이름이 비어 있습니다; 부모 전화번호가 휴대폰 번호(010-1234-5678) 형식이 아닙니다: 없음; \
         학생 전화번호가 휴대폰 번호(010-1234-5678) 형식이 아닙니다: abc"
    );
    let json = serde_json::to_value(by_row(6)).expect("serialises");
    assert_eq!(
        json,
        serde_json::json!({"row": 6, "name": "집전화",
            "error": "부모 전화번호가 휴대폰 번호(010-1234-5678) 형식이 아닙니다: 02-123-4567"})
    );
}

#[test]
fn blank_rows_are_skipped_silently() {
    let bytes = xlsx(&[
        vec![S("올해 명단")],
        vec![],
        vec![S("이름"), S("부모 전화번호")],
        vec![],
        vec![S("가"), S("010-1234-5678")],
        vec![S("   "), S(" ")],
        vec![],
        vec![S("나"), S("010-1234-5679")],
        vec![],
        vec![],
    ]);
    let got = must_import(&bytes);
    assert_eq!(got.header.row, 3);
    assert_eq!(got.rows.len(), 2);
    assert_eq!(got.failed().count(), 0);
    assert_eq!(got.students().map(|s| s.row).collect::<Vec<_>>(), [5, 8]);
    assert_eq!(got.blank_rows, 3);
}

#[test]
fn the_issue_2000_row_sheet_parses_to_the_expected_counts() {
    let spec = WorkbookSpec::issue_2000();
    let g = generate_students_workbook(&spec).expect("generates");
    let e = &g.expected;
    // The spec's own arithmetic, so a generator bug cannot hide behind assert_matches.
    assert_eq!(e.data_rows, 1_990);
    assert_eq!(e.data_rows + e.blank_rows, 2_000);
    assert_eq!(e.students.len(), 1_930);
    assert_eq!(e.unique(), 1_880);
    assert_eq!(e.invalid.len(), 60);
    assert_eq!(e.pre_existing.len(), 30);

    let mut reports: Vec<Progress> = Vec::new();
    let got =
        import::import_xlsx(&g.bytes, &Limits::default(), |p| reports.push(p)).expect("imports");
    assert_matches(&got, e);

    // Siblings share a parent phone without being duplicates.
    let parents: HashSet<&str> = got
        .dedup()
        .unique
        .iter()
        .map(|s| s.parent_phone.as_str())
        .collect();
    assert_eq!(parents.len(), 1_880 - 40);
    // Pre-existing identities are among the imported ones.
    let ids: HashSet<(String, String)> = got
        .students()
        .map(|s| (s.name.clone(), s.parent_phone.as_str().to_owned()))
        .collect();
    assert!(e.pre_existing.iter().all(|p| ids.contains(&p.identity())));

    // Progress: reading then validating, never backwards, ending at 1.
    assert!(reports.iter().any(|p| p.phase == Phase::Reading));
    assert!(
        reports.windows(2).all(|w| w[0].fraction <= w[1].fraction),
        "{reports:?}"
    );
    let last = reports.last().expect("progress was reported");
    assert_eq!(
        (last.phase, last.rows_done, last.fraction),
        (Phase::Validating, 1_990, 1.0)
    );
}

#[test]
fn whole_file_errors() {
    // Name without parent phone: the message lists what is expected and what was found.
    let bytes = xlsx(&[
        vec![S("번호"), S("이름"), S("연락처")],
        vec![N(1.0), S("홍길동"), S("010-1234-5678")],
    ]);
    let e = import(&bytes).expect_err("parent phone column is required");
    let msg = e.to_string();
    assert!(
        matches!(&e, ImportError::MissingColumns { missing, .. } if missing == &[Field::ParentPhone])
    );
    assert!(
        msg.contains("부모 전화번호, 학부모 연락처, 보호자 전화번호"),
        "{msg}"
    );
    assert!(msg.contains("찾은 머리글: 번호, 이름, 연락처"), "{msg}");

    assert!(matches!(import(&xlsx(&[])), Err(ImportError::EmptySheet)));
    assert!(matches!(
        import(&xlsx(&[vec![S("   ")], vec![]])),
        Err(ImportError::EmptySheet)
    ));

    let mut xls = vec![0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
    xls.extend([0; 504]);
    assert!(matches!(import(&xls), Err(ImportError::LegacyXls)));
    assert!(matches!(
        import(b"name,phone\n"),
        Err(ImportError::Unreadable { .. })
    ));
    assert!(matches!(import(b""), Err(ImportError::Unreadable { .. })));

    // Only header rows: nothing to import, but not an error.
    let got = must_import(&xlsx(&[vec![S("이름"), S("학부모")]]));
    assert!(got.rows.is_empty());
}

#[test]
fn row_and_size_limits() {
    let g = generate_students_workbook(&WorkbookSpec::valid_rows(30)).expect("generates");
    let limits = |rows| Limits {
        max_data_rows: rows,
        ..Limits::default()
    };
    assert!(import::import_xlsx(&g.bytes, &limits(30), |_| {}).is_ok());
    match import::import_xlsx(&g.bytes, &limits(29), |_| {}) {
        Err(ImportError::TooManyRows {
            max: 29,
            found: 30,
            exact: true,
        }) => {}
        other => panic!("expected an exact TooManyRows, got {other:?}"),
    }
    // Far more rows than allowed: reading stops early.
    match import::import_xlsx(&g.bytes, &limits(10), |_| {}) {
        Err(ImportError::TooManyRows {
            max: 10,
            exact: false,
            found,
        }) => assert!(found > 10),
        other => panic!("expected an early TooManyRows, got {other:?}"),
    }
    let tiny = Limits {
        max_unpacked_bytes: 1_000,
        ..Limits::default()
    };
    assert!(matches!(
        import::import_xlsx(&g.bytes, &tiny, |_| {}),
        Err(ImportError::TooLarge { .. })
    ));
    let few_cells = Limits {
        max_cells: 50,
        ..Limits::default()
    };
    assert!(matches!(
        import::import_xlsx(&g.bytes, &few_cells, |_| {}),
        Err(ImportError::TooLarge { .. })
    ));
    // Cells far to the right are not read, so they cannot be a header.
    let narrow = Limits {
        max_columns: 1,
        ..Limits::default()
    };
    assert!(matches!(
        import::import_xlsx(&g.bytes, &narrow, |_| {}),
        Err(ImportError::MissingColumns { .. })
    ));
}

#[test]
fn a_stray_cell_far_away_costs_nothing() {
    // A Range-based reader would allocate the bounding box (1M rows × 16K columns).
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    sheet.write_string(0, 0, "이름").expect("writes");
    sheet.write_string(0, 1, "부모 전화번호").expect("writes");
    sheet.write_string(1, 0, "홍길동").expect("writes");
    sheet.write_string(1, 1, "010-1234-5678").expect("writes");
    sheet.write_string(1_048_575, 16_383, "x").expect("writes");
    let bytes = book.save_to_buffer().expect("saves");
    let got = must_import(&bytes);
    assert_eq!(got.students().count(), 1);
    assert_eq!(got.rows.len(), 1, "the far cell is beyond max_columns");
}

#[test]
fn import_from_a_path() {
    let g = generate_students_workbook(&WorkbookSpec::valid_rows(5)).expect("generates");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("students.xlsx");
    std::fs::write(&path, &g.bytes).expect("writes");
    let got = import::import_path(&path, &Limits::default(), |_| {}).expect("imports");
    assert_matches(&got, &g.expected);
    assert!(matches!(
        import::import_path(&dir.path().join("missing.xlsx"), &Limits::default(), |_| {}),
        Err(ImportError::Io(_))
    ));
}

#[test]
fn identity_is_trimmed_name_and_normalised_parent_phone() {
    let bytes = xlsx(&[
        vec![S("이름"), S("부모 전화번호")],
        vec![S("홍길동"), S("010-1234-5678")],
        vec![S("  홍길동 "), N(1012345678.0)],
        vec![S("홍길동"), S("+82 10 1234 5679")],
    ]);
    let got = must_import(&bytes);
    let d = got.dedup();
    assert_eq!(d.unique.iter().map(|s| s.row).collect::<Vec<_>>(), [2, 4]);
    assert_eq!(
        d.duplicates
            .iter()
            .map(|(s, r)| (s.row, *r))
            .collect::<Vec<_>>(),
        [(3, 2)]
    );
    let id = d.unique[0].identity();
    assert_eq!(
        (id.name.as_str(), id.parent_phone.as_str()),
        ("홍길동", "010-1234-5678")
    );
}

fn any_cell() -> impl Strategy<Value = Option<Cell>> {
    prop_oneof![
        3 => Just(None),
        2 => prop::sample::select(vec![
            "이름", "성명", "부모 전화번호", "학부모", "연락처", "학교", "학년", "Name", "parent",
            "010-1234-5678", "01012345678", "+82 10 1234 5678", "02-123-4567", " ", "",
        ])
        .prop_map(Cell::text),
        2 => ".{0,60}".prop_map(Cell::text),
        1 => any::<i64>().prop_map(|i| Some(Cell::Int(i))),
        1 => any::<f64>().prop_map(|f| Some(Cell::Float(f))),
        1 => (1_000_000_000i64..1_099_999_999).prop_map(|i| Some(Cell::Float(i as f64))),
        1 => any::<bool>().prop_map(|b| Some(Cell::Bool(b))),
        1 => Just(Some(Cell::Error("#N/A".into()))),
    ]
}

fn any_grid() -> impl Strategy<Value = Vec<(u32, Vec<Option<Cell>>)>> {
    prop::collection::vec(
        (
            prop_oneof![1u32..40, Just(u32::MAX), 1u32..=u32::MAX],
            prop::collection::vec(any_cell(), 0..8),
        ),
        0..40,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Header detection and validation never panic, and every data row gets exactly one outcome
    /// carrying its own row number.
    #[test]
    fn random_grids_never_panic(rows in any_grid()) {
        let grid = Grid::from_rows(rows);
        if let Ok(parsed) = import::parse_grid(&grid, &Limits::default()) {
            let header_row = parsed.header.row;
            let numbers: Vec<u32> = parsed.rows().map(|r| match r {
                Ok(s) => s.row,
                Err(e) => e.row,
            }).collect();
            prop_assert_eq!(numbers.len(), parsed.len());
            prop_assert!(numbers.iter().all(|n| *n > header_row));
            prop_assert!(numbers.windows(2).all(|w| w[0] < w[1]));
            for r in parsed.rows() {
                match r {
                    Ok(s) => {
                        prop_assert!(!s.name.is_empty() && s.name.chars().count() <= 50);
                        prop_assert!(Phone::parse(s.parent_phone.as_str()).as_ref() == Ok(&s.parent_phone));
                    }
                    Err(e) => prop_assert!(!e.problems.is_empty() && !e.error.is_empty()),
                }
            }
            let _ = parsed.blank_rows();
        }
    }

    /// Arbitrary bytes are refused, never a panic.
    #[test]
    fn random_bytes_are_an_error(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        prop_assert!(import(&bytes).is_err());
    }

    /// Phone parsing never panics and is idempotent on what it accepts.
    #[test]
    fn phone_parse_is_total_and_idempotent(s in ".{0,40}") {
        if let Ok(p) = Phone::parse(&s) {
            prop_assert_eq!(Phone::parse(p.as_str()), Ok(p.clone()));
            prop_assert!(p.as_str().len() == 13 || p.as_str().len() == 12);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// A valid workbook with bytes flipped or cut: an error or an import, never a panic.
    #[test]
    fn damaged_workbooks_never_panic(
        seed in 0u64..1000,
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..24),
        cut in any::<prop::sample::Index>(),
        do_cut in any::<bool>(),
    ) {
        let spec = WorkbookSpec { seed, numeric_phones: true, title_rows: 1, ..WorkbookSpec::valid_rows(20) };
        let mut bytes = generate_students_workbook(&spec).expect("generates").bytes;
        for (at, b) in flips {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        if do_cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        let _ = import(&bytes);
    }

    /// Well-zipped workbooks whose XML parts are damaged: this reaches calamine's XML readers
    /// (flipped bytes mostly stop at the zip checksum).
    #[test]
    fn damaged_xml_never_panics(
        seed in 0u64..1000,
        part in prop::sample::select(vec![
            "xl/worksheets/sheet1.xml", "xl/sharedStrings.xml", "xl/workbook.xml",
            "xl/_rels/workbook.xml.rels", "[Content_Types].xml", "xl/styles.xml",
        ]),
        edits in prop::collection::vec((any::<prop::sample::Index>(), prop_oneof![
            any::<u8>().prop_map(|b| vec![b]),
            prop::sample::select(vec![
                "<", ">", "\"", "/", "0", "9", "-", "</row>", "</c>", "<v>", "</sheetData>",
                r#"<row r="4294967295">"#, r#"<row r="0">"#, r#"<row r="99999999999">"#,
                r#"<c r="XFD1048577" t="s"><v>999999</v></c>"#, r#"<c r="A1" t="s"><v>-1</v></c>"#,
                r#"<c r="B2" t="e"><v>#N/A</v></c>"#, r#"<c r="C3"><v>NaN</v></c>"#,
                r#"<c r="ZZZZZZ9"><v>1e999</v></c>"#, r#"<c t="inlineStr"><is><t>x</t></is></c>"#,
                r#"<dimension ref="A1:XFD1048576"/>"#, r#"<si><t>"#, "&#0;", "&#xD800;", "&bogus;",
            ]).prop_map(|s| s.as_bytes().to_vec()),
        ]), 1..8),
        delete in prop::option::of((any::<prop::sample::Index>(), 0usize..64)),
    ) {
        let spec = WorkbookSpec { seed, numeric_phones: true, title_rows: 1, ..WorkbookSpec::valid_rows(12) };
        let bytes = generate_students_workbook(&spec).expect("generates").bytes;
        let mut entries = unzip(&bytes);
        if let Some((_, data)) = entries.iter_mut().find(|(n, _)| n == part) {
            for (at, insert) in edits {
                let i = at.index(data.len() + 1);
                data.splice(i..i, insert);
            }
            if let Some((at, n)) = delete {
                let i = at.index(data.len() + 1);
                let end = (i + n).min(data.len());
                data.drain(i..end);
            }
        }
        let _ = import(&rezip(&entries));
    }

    /// Random grids written to real .xlsx files parse without panicking.
    #[test]
    fn random_sheets_never_panic(rows in any_grid()) {
        let mut book = Workbook::new();
        let sheet = book.add_worksheet();
        for (r, cells) in &rows {
            // Rows near Excel's last one cost rust_xlsxwriter ~0.3 s each in debug builds; that
            // case has its own test (a_stray_cell_far_away_costs_nothing).
            let r = if *r > 5_000 { 5_000 } else { r - 1 };
            for (c, cell) in cells.iter().enumerate() {
                let c = c as u16;
                let _ = match cell {
                    Some(Cell::Text(s)) => sheet.write_string(r, c, s.as_str()).map(|_| ()),
                    Some(Cell::Int(i)) => sheet.write_number(r, c, *i as f64).map(|_| ()),
                    Some(Cell::Float(f)) => sheet.write_number(r, c, *f).map(|_| ()),
                    Some(Cell::Bool(b)) => sheet.write_boolean(r, c, *b).map(|_| ()),
                    Some(Cell::Error(_)) => sheet.write_formula(r, c, "=1/0").map(|_| ()),
                    None => Ok(()),
                };
            }
        }
        let bytes = book.save_to_buffer().expect("saves");
        let _ = import(&bytes);
    }
}

fn unzip(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).expect("a zip");
    (0..zip.len())
        .map(|i| {
            let mut f = zip.by_index(i).expect("an entry");
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut data).expect("reads");
            (f.name().expect("a utf-8 name").into_owned(), data)
        })
        .collect()
}

fn rezip(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    use std::io::Write as _;
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in entries {
        w.start_file(name.as_str(), opts).expect("starts");
        w.write_all(data).expect("writes");
    }
    w.finish().expect("finishes").into_inner()
}

#[test]
fn a_rezipped_workbook_still_imports() {
    // The damaged-XML fuzz is only meaningful if an undamaged rezip imports.
    let g = generate_students_workbook(&WorkbookSpec::valid_rows(12)).expect("generates");
    assert_matches(&must_import(&rezip(&unzip(&g.bytes))), &g.expected);
}

fn read_back(bytes: &[u8]) -> calamine::Range<Data> {
    let mut book: Xlsx<_> = Xlsx::new(Cursor::new(bytes)).expect("export is a readable xlsx");
    assert_eq!(book.sheet_names(), [export::SHEET_NAME]);
    book.worksheet_range(export::SHEET_NAME)
        .expect("sheet reads")
}

fn text(range: &calamine::Range<Data>, row: u32, col: u32) -> String {
    match range.get_value((row, col)) {
        Some(Data::String(s)) => s.clone(),
        Some(Data::Float(f)) => f.to_string(),
        Some(Data::Empty) | None => String::new(),
        Some(other) => format!("{other:?}"),
    }
}

#[test]
fn export_round_trip() {
    let sessions = [
        SessionInfo {
            id: 10,
            title: "1회".into(),
            date: Some("2024-03-02".into()),
        },
        SessionInfo {
            id: 11,
            title: "2회".into(),
            date: None,
        },
        SessionInfo {
            id: 12,
            title: "보강".into(),
            date: Some("2024-03-16".into()),
        },
    ];
    let students = [
        StudentInfo {
            name: "김민준".into(),
            school: Some("서울중".into()),
            grade: Some("2".into()),
            phone: Some("010-1111-2222".into()),
            parent_phone: Some("010-3333-4444".into()),
            attendance: [
                (10, "출석".to_owned()),
                (12, "지각".to_owned()),
                (99, "?".to_owned()),
            ]
            .into_iter()
            .collect(),
        },
        StudentInfo {
            name: "=HYPERLINK(\"http://x\")".into(),
            parent_phone: Some("010-5555-6666".into()),
            attendance: [(11, "결석".to_owned())].into_iter().collect(),
            ..StudentInfo::default()
        },
    ];
    let bytes =
        export::attendance_workbook("중등 수학 A반", &sessions, &students).expect("exports");
    let r = read_back(&bytes);
    assert_eq!(r.start(), Some((0, 0)));
    assert_eq!(
        r.end(),
        Some((3, 8)),
        "title, header, 2 students; 6 + 3 columns"
    );
    assert_eq!(text(&r, 0, 0), "중등 수학 A반");
    let header: Vec<String> = (0..9).map(|c| text(&r, 1, c)).collect();
    assert_eq!(
        header,
        [
            "번호",
            "이름",
            "학교",
            "학년",
            "학생 전화번호",
            "부모 전화번호",
            "1회\n2024-03-02",
            "2회",
            "보강\n2024-03-16"
        ]
    );
    let row1: Vec<String> = (0..9).map(|c| text(&r, 2, c)).collect();
    assert_eq!(
        row1,
        [
            "1",
            "김민준",
            "서울중",
            "2",
            "010-1111-2222",
            "010-3333-4444",
            "출석",
            "",
            "지각"
        ]
    );
    let row2: Vec<String> = (0..9).map(|c| text(&r, 3, c)).collect();
    assert_eq!(
        row2,
        [
            "2",
            "=HYPERLINK(\"http://x\")",
            "",
            "",
            "",
            "010-5555-6666",
            "",
            "결석",
            ""
        ]
    );

    // The sheet XML carries the frozen panes and the autofilter over header and students.
    let mut zip = zip::ZipArchive::new(Cursor::new(&bytes)).expect("zip");
    let mut xml = String::new();
    std::io::Read::read_to_string(
        &mut zip.by_name("xl/worksheets/sheet1.xml").expect("sheet"),
        &mut xml,
    )
    .expect("utf-8");
    assert!(xml.contains(r#"<pane xSplit="2" ySplit="2" topLeftCell="C3" activePane="bottomRight" state="frozen"/>"#), "{xml}");
    assert!(xml.contains(r#"<autoFilter ref="A2:I4"/>"#), "{xml}");
    assert!(xml.contains("<cols>"), "column widths are set");
    assert!(!xml.contains("<f>"), "no formulas");
}

#[test]
fn export_with_no_students_or_sessions() {
    let bytes = export::attendance_workbook("", &[], &[]).expect("exports");
    let r = read_back(&bytes);
    assert_eq!(text(&r, 0, 0), "출석부");
    assert_eq!(text(&r, 1, 5), "부모 전화번호");
    assert_eq!(r.end(), Some((1, 5)));
}

#[test]
fn an_exported_roster_imports_back() {
    let students: Vec<StudentInfo> = (0..20)
        .map(|i| StudentInfo {
            name: format!("학생{i}"),
            parent_phone: Some(format!("010-2000-{:04}", i)),
            grade: Some("3".into()),
            ..StudentInfo::default()
        })
        .collect();
    let bytes = export::attendance_workbook("반", &[], &students).expect("exports");
    let got = must_import(&bytes);
    assert_eq!(got.header.row, 2, "the title row is skipped");
    assert_eq!(got.students().count(), 20);
    assert_eq!(got.header.ignored, ["번호"]);
}

#[test]
fn passwords_use_the_unambiguous_alphabet_and_do_not_repeat() {
    let mut seen = HashSet::new();
    for _ in 0..10_000 {
        let p = credentials::generate_password().expect("os rng");
        let s = p.as_str();
        assert_eq!(s.chars().count(), PASSWORD_LEN);
        assert!(s.chars().all(|c| PASSWORD_ALPHABET.contains(c)), "{s}");
        assert!(s.chars().any(|c| c.is_ascii_uppercase()), "{s}");
        assert!(s.chars().any(|c| c.is_ascii_lowercase()), "{s}");
        assert!(s.chars().any(|c| c.is_ascii_digit()), "{s}");
        assert!(seen.insert(s.to_owned()), "repeated password {s}");
    }
    // Every symbol turns up: the sampler reaches the whole alphabet.
    let used: HashSet<char> = seen.iter().flat_map(|s| s.chars()).collect();
    assert_eq!(used.len(), PASSWORD_ALPHABET.len());
}

#[test]
fn random_login_ids_do_not_repeat() {
    let phone = Phone::parse("010-1234-5678").expect("valid");
    let mut seen = HashSet::new();
    for i in 0..10_000 {
        let id = credentials::login_id("s", &phone, DETERMINISTIC_ATTEMPTS + i).expect("os rng");
        assert!(id.starts_with('s'));
        assert!(id[1..].chars().all(|c| LOGIN_ALPHABET.contains(c)), "{id}");
        assert!(seen.insert(id.clone()), "repeated login id {id}");
    }
}

#[test]
fn sibling_login_ids_resolve_with_attempts() {
    // Two children of one parent: the second insert conflicts once and takes attempt 1.
    let g = generate_students_workbook(&WorkbookSpec {
        siblings: 5,
        ..WorkbookSpec::valid_rows(50)
    })
    .expect("generates");
    let got = must_import(&g.bytes);
    let mut taken = HashSet::new();
    for s in got.students() {
        let mut attempt = 0;
        let id = loop {
            let id = credentials::login_id("s", &s.parent_phone, attempt).expect("id");
            if taken.insert(id.clone()) {
                break id;
            }
            attempt += 1;
        };
        let digits = s.parent_phone.digits();
        assert!(
            id.starts_with(&format!("s{}", &digits[digits.len() - 8..])),
            "{id}"
        );
        assert!(
            attempt < DETERMINISTIC_ATTEMPTS,
            "siblings get readable ids: {id}"
        );
    }
    assert_eq!(taken.len(), 50);
}

#[test]
fn batch_hashes_verify_in_order() {
    let passwords: Vec<_> = (0..6)
        .map(|_| credentials::generate_password().expect("os rng"))
        .collect();
    let hashes = credentials::hash_passwords(&passwords, NonZeroUsize::new(2).expect("2 > 0"))
        .expect("hashes");
    assert_eq!(hashes.len(), 6);
    for (p, h) in passwords.iter().zip(&hashes) {
        assert!(credentials::verify_password(p.as_str(), h));
    }
    assert!(!credentials::verify_password(
        passwords[0].as_str(),
        &hashes[1]
    ));
    assert!(
        credentials::hash_passwords(&[], NonZeroUsize::MIN)
            .expect("empty")
            .is_empty()
    );
}
