//! The CLI over HTTPS (issue 17, item 4): a real `jobpulse up` behind a rustls proxy whose
//! certificate is signed by a CA made for this test. Without `--ca-cert` the client refuses the
//! server with a clear certificate error; with it the import is submitted and watched to DONE.

use std::process::Stdio;
use std::sync::Arc;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::harness::{jobpulse, workbook};
use crate::procs::Proc;

/// A CA (PEM) and a TLS acceptor for `localhost` signed by it.
fn ca_and_acceptor() -> anyhow::Result<(String, TlsAcceptor)> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "jobpulse test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;

    let mut leaf = CertificateParams::new(vec!["localhost".to_owned()])?;
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate()?;
    let cert = leaf.signed_by(&key, &ca)?;

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )?;
    Ok((ca.pem(), TlsAcceptor::from(Arc::new(config))))
}

/// Terminates TLS on a free port and forwards each connection to `upstream`; returns the port.
async fn tls_proxy(acceptor: TlsAcceptor, upstream: String) -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
            tokio::spawn(async move {
                // A client that refuses our certificate ends its handshake: nothing to forward.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Ok(mut up) = TcpStream::connect(&upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                }
            });
        }
    });
    Ok(port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_speaks_https_and_trusts_only_what_it_is_told() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let up = Proc::up(&dir.path().join("data"), Stdio::null(), &[], &[])?;
    let (ca_pem, acceptor) = ca_and_acceptor()?;
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca_pem)?;
    let upstream = up.base.trim_start_matches("http://").to_owned();
    let port = tls_proxy(acceptor, upstream).await?;
    let url = format!("https://localhost:{port}");
    let book = workbook(dir.path())?;

    let run = |ca: Option<std::path::PathBuf>| {
        let (url, token, book) = (url.clone(), up.token.clone(), book.clone());
        tokio::task::spawn_blocking(move || {
            let mut c = jobpulse();
            c.args(["submit", "excel"])
                .arg(&book)
                .args(["--lecture", "1", "--watch", "--url", &url])
                .env("JOBPULSE_TOKEN", token);
            if let Some(ca) = ca {
                c.arg("--ca-cert").arg(ca);
            }
            c.output()
        })
    };

    // Not trusted: a clear certificate error, a non-zero exit, nothing submitted.
    let out = run(None).await??;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an untrusted server was accepted");
    assert!(
        err.contains("certificate") && err.contains("--ca-cert"),
        "the error does not say what is wrong: {err}"
    );
    let jobs: serde_json::Value = up.get("/api/v1/jobs/").send().await?.json().await?;
    assert_eq!(
        jobs["results"].as_array().map(Vec::len),
        Some(0),
        "something was submitted through an untrusted connection: {jobs}"
    );

    // Trusted through --ca-cert: submitted and watched to DONE over HTTPS.
    let out = run(Some(ca_file.clone())).await??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "with --ca-cert: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().context("no output")?;
    assert!(
        last.starts_with("DONE") && last.contains(&format!("{url}/api/v1/jobs/")),
        "the last line gives no result URL over https: {stdout}"
    );

    // A file that is not a certificate: a clear error.
    let bogus = dir.path().join("bogus.pem");
    std::fs::write(&bogus, "not a certificate")?;
    let out = run(Some(bogus)).await??;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--ca-cert"), "{err}");
    Ok(())
}
