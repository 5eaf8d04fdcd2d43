//! Authentication and tenant isolation over a real socket.

use jobpulse_api::auth::{AuthConfig, Claims, OneOrMany, TokenSpec, Verifier};
use jobpulse_domain::{JobStatus, VideoStatus};
use jsonwebtoken::{EncodingKey, Header};

use crate::helpers::*;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn claims() -> Claims {
    Claims {
        exp: now() + 600,
        nbf: None,
        iat: None,
        token_type: "access".into(),
        tenant_id: 1,
        tenant_code: None,
        user_id: None,
        role: Some("staff".into()),
        aud: None,
        iss: None,
    }
}

fn sign(c: &Claims, secret: &[u8]) -> String {
    let key = EncodingKey::from_secret(secret).expect("a non-empty secret");
    jsonwebtoken::encode(&Header::default(), c, &key).expect("signs")
}

async fn assert_401(app: &TestApp, token: Option<&str>) {
    let res = app.get("/api/v1/media/videos/1/progress/", token).await;
    assert_eq!(res.status(), 401, "token {token:?}");
    assert_eq!(
        res.headers().get("www-authenticate").map(|v| v.as_bytes()),
        Some(&b"Bearer"[..])
    );
    let body: serde_json::Value = res.json().await.expect("json body");
    assert_eq!(body["error"]["code"], "unauthorized");
}

#[tokio::test]
async fn bad_tokens_get_401_with_a_json_body() {
    let app = TestApp::spawn().await;
    assert_401(&app, None).await;
    assert_401(&app, Some("garbage")).await;
    assert_401(
        &app,
        Some(&sign(&claims(), b"another-secret-another-secret-1234")),
    )
    .await;
    let mut expired = claims();
    expired.exp = now() - 3600;
    assert_401(&app, Some(&sign(&expired, SECRET))).await;
    let mut refresh = claims();
    refresh.token_type = "refresh".into();
    assert_401(&app, Some(&sign(&refresh, SECRET))).await;
    let mut early = claims();
    early.nbf = Some(now() + 3600);
    assert_401(&app, Some(&sign(&early, SECRET))).await;
    let mut tenantless = serde_json::to_value(claims()).expect("json");
    tenantless
        .as_object_mut()
        .expect("object")
        .remove("tenant_id");
    let t = jsonwebtoken::encode(
        &Header::default(),
        &tenantless,
        &EncodingKey::from_secret(SECRET).expect("a non-empty secret"),
    )
    .expect("signs");
    assert_401(&app, Some(&t)).await;
}

#[tokio::test]
async fn a_worker_token_is_refused_on_browser_routes() {
    let app = TestApp::spawn().await;
    let mut c = claims();
    c.aud = Some(OneOrMany::One("worker".into()));
    let res = app
        .get("/api/v1/media/videos/1/progress/", Some(&sign(&c, SECRET)))
        .await;
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn tenant_code_header_must_agree_with_the_token() {
    let app = TestApp::spawn().await;
    let token = app.token(1, "teacher"); // tenant_code "t1"
    let url = format!("{}/api/v1/media/videos/1/progress/", app.base);
    let res = app
        .client
        .get(&url)
        .bearer_auth(&token)
        .header("X-Tenant-Code", "t2")
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), 403);
    let res = app
        .client
        .get(&url)
        .bearer_auth(&token)
        .header("X-Tenant-Code", "t1")
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), 200);
    // A token without tenant_code: the header cannot contradict it; the token's tenant rules.
    let plain = sign(&claims(), SECRET);
    let res = app
        .client
        .get(&url)
        .bearer_auth(&plain)
        .header("X-Tenant-Code", "anything")
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn staff_only_job_types_are_404_to_students_and_parents() {
    let app = TestApp::spawn().await;
    app.put(job_key(1, "imp"), fence(1, 1, 2), running_import(40, 3, 10))
        .await;
    app.put(
        job_key(1, "ppt"),
        fence(1, 1, 2),
        job_state(JobStatus::Running, "ppt_generation"),
    )
    .await;
    for role in ["student", "parent"] {
        let res = app
            .get("/api/v1/jobs/imp/progress/", Some(&app.token(1, role)))
            .await;
        assert_eq!(res.status(), 404, "{role}");
        let res = app
            .get("/api/v1/jobs/ppt/progress/", Some(&app.token(1, role)))
            .await;
        assert_eq!(res.status(), 200, "{role} may see non-staff types");
    }
    for role in ["owner", "admin", "teacher", "staff"] {
        let res = app
            .get("/api/v1/jobs/imp/progress/", Some(&app.token(1, role)))
            .await;
        assert_eq!(res.status(), 200, "{role}");
    }
}

#[tokio::test]
async fn another_tenants_id_is_byte_identical_to_an_unknown_one() {
    let app = TestApp::spawn().await;
    // Tenant 2 owns video 77 and job "secret"; tenant 1 asks for them and for unknown ids.
    app.put(
        video_key(2, 77),
        fence(1, 1, 3),
        processing(40, Some((4, 0.1)), Some(30)),
    )
    .await;
    app.put(
        job_key(2, "secret"),
        fence(1, 1, 3),
        jobpulse_domain::State::job(
            JobStatus::Running,
            jobpulse_domain::JobType::parse("ppt_generation").expect("valid"),
        ),
    )
    .await;
    app.put(
        video_key(2, 78),
        fence(1, 0, 1),
        jobpulse_domain::State::video(VideoStatus::Uploaded),
    )
    .await;
    let token = app.token(1, "owner");
    for (foreign, unknown) in [
        (
            "/api/v1/media/videos/77/progress/",
            "/api/v1/media/videos/77/progress/",
        ),
        (
            "/api/v1/jobs/secret/progress/",
            "/api/v1/jobs/secret/progress/",
        ),
    ] {
        let a = app.get(foreign, Some(&token)).await;
        let (sa, ha) = (a.status(), a.headers().clone());
        let ba = a.bytes().await.expect("body");
        // The same path for tenant 3, which has nothing at all.
        let b = app.get(unknown, Some(&app.token(3, "owner"))).await;
        let (sb, hb) = (b.status(), b.headers().clone());
        let bb = b.bytes().await.expect("body");
        assert_eq!((sa, &ba), (sb, &bb), "{foreign}");
        for h in [
            "etag",
            "cache-control",
            "retry-after",
            "x-poll-after",
            "content-type",
        ] {
            assert_eq!(ha.get(h), hb.get(h), "{h}");
        }
    }
}

#[tokio::test]
async fn a_public_key_configuration_verifies_but_cannot_mint() {
    // An Ed25519 key pair (generated once with openssl for this test).
    let public = b"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n";
    let cfg = AuthConfig::public_key("EdDSA", public).expect("valid key");
    let v = Verifier::new(cfg);
    assert!(
        v.mint(&TokenSpec {
            tenant: tenant(1),
            tenant_code: None,
            user_id: None,
            role: None,
            ttl_secs: 60,
            worker: false
        })
        .is_err()
    );
    // An HS256 token must not pass an EdDSA verifier (algorithm confusion).
    assert!(v.verify(&sign(&claims(), SECRET)).is_err());
}
