//! The settings' tests: parsing, precedence and sources, validation, the report, the example
//! file, S3 and the tenant caps.

use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;

use super::*;

fn resolve(f: impl FnOnce(&mut ServerArgs)) -> anyhow::Result<Settings> {
    let mut args = ServerArgs::default();
    f(&mut args);
    Settings::resolve(&args)
}

fn parse<T: FromStr<Err = String>>(s: &str) -> T {
    match s.parse() {
        Ok(v) => v,
        Err(e) => panic!("{s:?}: {e}"),
    }
}

#[test]
fn upload_settings_default_and_validate() -> anyhow::Result<()> {
    let s = resolve(|_| {})?;
    assert_eq!(s.public_base(), "http://127.0.0.1:8080");
    assert_eq!(s.upload_retention.0, DEFAULT_UPLOAD_RETENTION);
    assert!(s.storage_url.is_none() && s.cors_headers.0.is_empty());

    let s = resolve(|a| {
        a.bind = Some("0.0.0.0".parse().expect("ip"));
        a.port = Some(9000);
        a.cors_headers = Some(parse(" X-Request-Trace , x-other "));
    })?;
    assert_eq!(s.public_base(), "http://127.0.0.1:9000");
    assert_eq!(s.cors_headers.0, ["x-request-trace", "x-other"]);

    let s = resolve(|a| a.public_url = Some(parse("https://api.example.com/jp/")))?;
    assert_eq!(s.public_base(), "https://api.example.com/jp");

    for bad in [
        "api.example.com",
        "ftp://x",
        "https://x/?a=1",
        "https://u:p@x",
    ] {
        assert!(bad.parse::<PublicUrl>().is_err(), "{bad} must be refused");
    }
    assert!("bad header".parse::<HeaderNames>().is_err());
    assert!(resolve(|a| a.upload_retention = Some(parse("1h"))).is_err());
    assert_eq!(
        resolve(|a| a.upload_retention = Some(parse("2d")))?
            .upload_retention
            .0,
        Duration::from_secs(2 * 86_400)
    );
    Ok(())
}

#[test]
fn durations_parse_with_humantime() {
    assert_eq!(parse::<Dur>("1h30m").0, Duration::from_secs(5400));
    assert_eq!(parse::<Dur>("90min").0, Duration::from_secs(5400));
    assert_eq!(parse::<Dur>("45").0, Duration::from_secs(45));
    assert!("0s".parse::<Dur>().is_err());
    assert!("soon".parse::<Dur>().is_err());
    assert_eq!(parse::<Retention>("off").0, None);
    assert!(parse::<Bool>("1").0 && !parse::<Bool>("false").0);
    assert!("maybe".parse::<Bool>().is_err());
    let f = parse_file("legacy_read = true\naws_allow_http = \"1\"\n").expect("valid");
    assert_eq!(
        (f.legacy_read, f.aws_allow_http),
        (Some(Bool(true)), Some(Bool(true)))
    );
    assert_eq!(
        parse::<Retention>("7d").0,
        Some(Duration::from_secs(7 * 86_400))
    );
}

/// Flag > env > file > default, and each value's source is reported.
#[test]
fn precedence_and_sources() -> anyhow::Result<()> {
    let file =
        parse_file("port = 7000\nkey_prefix = \"f\"\nlive_ttl = \"2h\"\nlease = \"90min\"\n")?;
    let mut args = ServerArgs {
        port: Some(7100),
        key_prefix: Some("e".into()),
        ..ServerArgs::default()
    };
    args.from_env.insert("key_prefix");
    let c = Config::merge(&args, file);
    assert_eq!(c.port, 7100);
    assert_eq!(c.sources["port"], Source::Flag);
    assert_eq!(c.key_prefix, "e");
    assert_eq!(c.sources["key_prefix"], Source::Env);
    assert_eq!(c.live_ttl.0, Duration::from_secs(7200));
    assert_eq!(c.sources["live_ttl"], Source::File);
    assert_eq!(c.lease.map(|d| d.0), Some(Duration::from_secs(5400)));
    assert_eq!(c.bind, IpAddr::from([127, 0, 0, 1]));
    assert_eq!(c.sources["bind"], Source::Default);
    assert_eq!(c.sources["jwt_secret"], Source::Unset);
    Ok(())
}

#[test]
fn one_redis_setting_at_a_time_and_cluster_passwords_redacted() -> anyhow::Result<()> {
    let both = resolve(|a| {
        a.redis_url = Some("redis://cache:6379".into());
        a.redis_cluster_nodes = Some("redis://a:7000,redis://b:7001".into());
    });
    let err = both.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("not both"), "{err}");
    let err = resolve(|a| a.redis_cluster_nodes = Some(" , ".into()))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("redis_cluster_nodes"), "{err}");
    let s = resolve(|a| {
        a.redis_cluster_nodes =
            Some("redis://:clusterpass@a:7000, redis://:clusterpass@b:7001".into());
    })?;
    assert_eq!(
        s.redis_target(),
        Some(jobpulse_store::RedisTarget::Cluster(vec![
            "redis://:clusterpass@a:7000".into(),
            "redis://:clusterpass@b:7001".into()
        ]))
    );
    let report = s.report();
    assert!(!report.contains("clusterpass"), "{report}");
    Ok(())
}

#[test]
fn unknown_file_keys_are_refused_by_name() {
    let err = match parse_file("port = 1\nconcurency = 4\n") {
        Ok(_) => panic!("an unknown key was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("concurency"), "{err}");
    let err = match parse_file("live_ttl = \"soon\"\n") {
        Ok(_) => panic!("a bad duration was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("invalid duration"), "{err}");
}

#[test]
fn the_report_redacts_secrets() -> anyhow::Result<()> {
    let s = resolve(|a| {
        a.jwt_secret = Some("s3cret-s3cret-s3cret-s3cret-s3cret".into());
        a.credentials_key = Some("k3y-k3y-k3y-k3y-k3y-k3y-k3y-k3y-k3y".into());
        a.aws_secret_access_key = Some("aws-s3cret".into());
        a.database_url = Some("postgres://jp:pgpass@db:5432/jp".into());
        a.redis_url = Some("redis://:redispass@cache:6379".into());
    })?;
    let report = s.report();
    for secret in ["s3cret", "k3y", "aws-s3cret", "pgpass", "redispass"] {
        assert!(!report.contains(secret), "{secret} shown:\n{report}");
    }
    assert!(report.contains("postgres://jp:***@db:5432/jp"), "{report}");
    // The report is itself a valid config file.
    parse_file(&report)?;
    Ok(())
}

/// `deploy/jobpulse.example.toml` names every key, and with every key uncommented it is a
/// valid config file (so it cannot drift from the declaration).
#[test]
fn the_example_file_lists_every_key() -> anyhow::Result<()> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/jobpulse.example.toml");
    let text = std::fs::read_to_string(&path)?;
    let mut uncommented = String::new();
    let mut seen = std::collections::BTreeSet::new();
    for line in text.lines() {
        let l = line.trim_start_matches("#").trim_start();
        if let Some((key, _)) = l.split_once(" = ")
            && !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit())
        {
            assert!(seen.insert(key.to_owned()), "{key} appears twice");
            uncommented.push_str(l);
            uncommented.push('\n');
        }
    }
    parse_file(&uncommented).context("the example file with every key uncommented")?;
    let missing: Vec<_> = KEYS
        .iter()
        .filter(|k| !seen.contains(k.name))
        .map(|k| k.name)
        .collect();
    assert!(missing.is_empty(), "not in {}: {missing:?}", path.display());
    Ok(())
}

/// S3 settings: flag > environment (with its variants) > file; secrets from the file reach
/// the S3 options.
#[test]
fn s3_settings_follow_the_precedence() -> anyhow::Result<()> {
    let file = parse_file(
        "aws_endpoint_url = \"https://file.example\"\naws_region = \"file-region\"\n\
         aws_access_key_id = \"AKFILE\"\naws_secret_access_key = \"file-secret\"\n\
         aws_allow_http = true\n",
    )?;
    let s = Settings {
        config: Config::merge(&ServerArgs::default(), file.clone()),
        config_file: None,
        hs256_secret: None,
    };
    // Only the file.
    let o = s.s3_options_with(|_| None)?;
    assert_eq!(o.endpoint.as_deref(), Some("https://file.example"));
    assert_eq!(o.region.as_deref(), Some("file-region"));
    assert_eq!(o.secret_access_key.as_deref(), Some("file-secret"));
    assert!(o.allow_http);
    // The environment's variants win over the file.
    let env = |n: &str| match n {
        "AWS_ENDPOINT_URL_S3" => Some("https://env-s3.example".to_owned()),
        "AWS_DEFAULT_REGION" => Some("env-region".to_owned()),
        _ => None,
    };
    let o = s.s3_options_with(env)?;
    assert_eq!(o.endpoint.as_deref(), Some("https://env-s3.example"));
    assert_eq!(o.region.as_deref(), Some("env-region"));
    assert_eq!(o.access_key_id.as_deref(), Some("AKFILE"));
    // A flag wins over everything.
    let flags = ServerArgs {
        aws_endpoint_url: Some("https://flag.example".into()),
        ..ServerArgs::default()
    };
    let s = Settings {
        config: Config::merge(&flags, file),
        config_file: None,
        hs256_secret: None,
    };
    let o = s.s3_options_with(env)?;
    assert_eq!(o.endpoint.as_deref(), Some("https://flag.example"));
    Ok(())
}

/// Per-tenant caps are on by default (issue 15 finding 9); each queue's own setting wins
/// over the deprecated `tenant_concurrency`, which wins over the defaults; `off` lifts one.
#[test]
fn tenant_caps_are_on_by_default() -> anyhow::Result<()> {
    let caps = |s: Settings| (s.tenant_caps().video, s.tenant_caps().ai);
    assert_eq!(caps(resolve(|_| {})?), (Some(2), Some(4)));
    assert_eq!(
        caps(resolve(|a| a.tenant_concurrency = Some(parse("3")))?),
        (Some(3), Some(3))
    );
    assert_eq!(
        caps(resolve(|a| {
            a.tenant_concurrency = Some(parse("3"));
            a.tenant_video_concurrency = Some(parse("off"));
        })?),
        (None, Some(3))
    );
    let file = parse_file("tenant_job_concurrency = 6\ntenant_video_concurrency = \"1\"\n")?;
    let s = Settings {
        config: Config::merge(&ServerArgs::default(), file),
        config_file: None,
        hs256_secret: None,
    };
    assert_eq!(caps(s), (Some(1), Some(6)));
    for bad in ["0", "-1", "many"] {
        assert!(bad.parse::<TenantCap>().is_err(), "{bad} must be refused");
    }
    assert!(parse_file("tenant_job_concurrency = 0\n").is_err());
    Ok(())
}

/// `job_input_retention`: 0 (the default: at once), a duration, or off.
#[test]
fn job_input_retention_may_be_zero() -> anyhow::Result<()> {
    assert_eq!(resolve(|_| {})?.job_input_retention.0, Some(Duration::ZERO));
    assert_eq!(parse::<KeepFor>("0").0, Some(Duration::ZERO));
    assert_eq!(parse::<KeepFor>("1h").0, Some(Duration::from_secs(3600)));
    assert_eq!(parse::<KeepFor>("off").0, None);
    for v in ["0", "1h", "off"] {
        let shown = parse::<KeepFor>(v).show();
        let back = parse_file(&format!("job_input_retention = {shown}\n"))?;
        assert_eq!(
            back.job_input_retention,
            Some(parse::<KeepFor>(v)),
            "{shown}"
        );
    }
    Ok(())
}
