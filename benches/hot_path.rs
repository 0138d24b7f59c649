//! Micro-benchmarks for the pieces of the authenticated hot path: path normalization,
//! credential extraction, header preparation, an identity-cache hit (hash + two lookups, and
//! a whole `Resolver::resolve`), and API-key parsing + hashing.
//!
//!     cargo bench --bench hot_path
#![allow(clippy::unwrap_used, clippy::expect_used)]
// `criterion_main!` writes an undocumented `main`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderName, HeaderValue};
use portcullis::auth::api_key;
use portcullis::auth::credentials::{self, Credential};
use portcullis::cache::{CredentialEntry, IdentityCache, Principal};
use portcullis::http::client::ConnInfo;
use portcullis::http::headers::{Forwarding, HeaderPolicy};
use portcullis::identity::{AuthMethod, Identity, Role};
use portcullis::path;

fn request_headers(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("host", "api.example.com"),
        ("user-agent", "bench/1.0"),
        ("accept", "application/json"),
        ("accept-encoding", "gzip"),
        ("connection", "keep-alive"),
    ] {
        h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    h.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    h
}

fn config() -> portcullis::Config {
    portcullis::Config::from_toml("", Vec::new()).unwrap()
}

fn bench_path(c: &mut Criterion) {
    c.bench_function("normalize canonical path", |b| {
        b.iter(|| path::normalize(black_box("/api/v1/users/12345/orders")))
    });
    c.bench_function("normalize dotted path", |b| {
        b.iter(|| path::normalize(black_box("/api//v1/./users/%7ejo/../12345")))
    });
}

fn bench_credentials(c: &mut Criterion) {
    let token =
        "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1c2VyXzEyMyJ9.c2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJl";
    let headers = request_headers(token);
    c.bench_function("extract bearer credential", |b| {
        b.iter(|| credentials::extract(black_box(&headers)).unwrap())
    });
    let key = api_key::generate().key;
    c.bench_function("api key parse + hash", |b| {
        b.iter(|| {
            let k = black_box(key.as_str());
            assert!(api_key::is_well_formed(k));
            portcullis::secret::hash(k)
        })
    });
}

fn bench_headers(c: &mut Criterion) {
    let policy = HeaderPolicy::new(config().identity_headers);
    let conn = ConnInfo::new("127.0.0.1:40000".parse().unwrap(), &[]);
    let identity = Identity::new(
        "user_0123456789abcdef01234567".into(),
        "someone@example.com".into(),
        Role::User,
        Some("ses_x".into()),
        None,
    )
    .unwrap();
    let rid = HeaderValue::from_static("0123456789abcdef0123456789abcdef");
    let template = request_headers("abc.def.ghi");
    let mut head = Vec::with_capacity(1024);
    c.bench_function("prepare forwarded headers", |b| {
        b.iter_batched_ref(
            || template.clone(),
            |h| {
                let injected = policy.prepare_request(
                    h,
                    &Forwarding {
                        conn: &conn,
                        identity: Some((&identity, AuthMethod::Jwt)),
                        request_id: &rid,
                        forward_credentials: false,
                        upgrade: false,
                        assertion: None,
                    },
                );
                head.clear();
                portcullis::proxy::write_extra_fields(&mut head, &injected);
                black_box(head.len())
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

fn bench_cache(c: &mut Criterion) {
    let cache = IdentityCache::new(&config().cache);
    let token =
        "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1c2VyXzEyMyJ9.c2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJl";
    let hash = portcullis::secret::hash(token);
    cache.put_credential(
        hash,
        Arc::new(CredentialEntry {
            kind: portcullis::identity::CredentialKind::AccessToken,
            principal: "ses_0123456789abcdef".into(),
            subject: Some("user_1".into()),
            expires_at: i64::MAX,
        }),
    );
    let identity = Identity::new("user_1".into(), "a@b.io".into(), Role::User, None, None).unwrap();
    cache.put_principal(
        "ses_0123456789abcdef".into(),
        Principal::Active(identity),
        cache.epoch(),
    );
    c.bench_function("identity cache hit (hash + 2 lookups)", |b| {
        b.iter(|| {
            let h = portcullis::secret::hash(black_box(token));
            let entry = cache.credential(&h).unwrap();
            cache.principal(&entry.principal).unwrap()
        })
    });

    // The whole resolver on a cached token, as the request path calls it.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[store]\ndatabase_url = \"sqlite://{d}/b.db\"\n[tokens]\nkey_dir = \"{d}\"\n[password_hashing]\nmemory_kib = 64\niterations = 1\n",
        d = dir.path().display()
    );
    let cfg = portcullis::Config::from_toml(&text, Vec::new()).unwrap();
    let app = rt.block_on(portcullis::App::build(cfg)).unwrap();
    let token = rt.block_on(async {
        let store = app.state.store.clone();
        portcullis::commands::create_user(
            &portcullis::Config::from_toml(&text, Vec::new()).unwrap(),
            "bench@example.com",
            "bench password",
            "Bench",
            Role::User,
        )
        .await
        .unwrap();
        let user = store
            .user_by_email("bench@example.com")
            .await
            .unwrap()
            .unwrap();
        app.state
            .sessions
            .start(&user, &Default::default())
            .await
            .unwrap()
            .access_token
    });
    let cred = Credential {
        secret: &token,
        kind: portcullis::identity::CredentialKind::AccessToken,
        method: AuthMethod::Jwt,
    };
    rt.block_on(app.state.resolver.resolve(&cred)).unwrap();
    c.bench_function("resolver.resolve, cached JWT", |b| {
        b.iter(|| {
            rt.block_on(app.state.resolver.resolve(black_box(&cred)))
                .unwrap()
        })
    });
}

criterion_group!(
    benches,
    bench_path,
    bench_credentials,
    bench_headers,
    bench_cache
);
criterion_main!(benches);
