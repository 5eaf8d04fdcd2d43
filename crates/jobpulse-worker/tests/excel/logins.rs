//! Generated passwords and login ids, and their hashes.

use super::*;

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
    let seen = std::sync::Mutex::new(Vec::new());
    let hashes =
        credentials::hash_passwords(&passwords, NonZeroUsize::new(2).expect("2 > 0"), &|n| {
            seen.lock().expect("not poisoned").push(n)
        })
        .expect("hashes");
    let mut seen = seen.into_inner().expect("not poisoned");
    seen.sort_unstable();
    assert_eq!(seen, [1, 2, 3, 4, 5, 6], "one report per hash");
    assert_eq!(hashes.len(), 6);
    for (p, h) in passwords.iter().zip(&hashes) {
        assert!(credentials::verify_password(p.as_str(), h));
    }
    assert!(!credentials::verify_password(
        passwords[0].as_str(),
        &hashes[1]
    ));
    assert!(
        credentials::hash_passwords(&[], NonZeroUsize::MIN, &|_| {})
            .expect("empty")
            .is_empty()
    );
}
