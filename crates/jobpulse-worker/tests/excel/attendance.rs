//! The attendance workbook, read back with calamine.

use super::*;

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
