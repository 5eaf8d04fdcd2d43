//! Parsing real sheets: headers, layouts, values, row errors, limits.

use super::*;

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
    // A title that happens to be a name word does not hide the real header below it.
    let got = must_import(&xlsx(&[
        vec![S("학생")],
        vec![S("성명"), S("부모 전화번호")],
        vec![S("홍길동"), S("010-1234-5678")],
    ]));
    assert_eq!(got.header.row, 2);
    assert_eq!(got.students().count(), 1);
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
