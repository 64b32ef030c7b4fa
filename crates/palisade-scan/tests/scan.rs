//! The scanner against the sample API: every planted flaw is found with its evidence, and the
//! fixed variant gives no finding.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod sample;

use std::collections::BTreeSet;

use palisade_scan::{scan, Identity, Options};

fn spec() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/sample-api.yaml"
    ))
    .unwrap()
}

fn options(flaws: &sample::Flaws, addr: std::net::SocketAddr) -> Options {
    let id = |sub: &str, admin: bool| Identity {
        authorization: format!("Bearer {}", sample::token(flaws, sub, admin)),
    };
    Options {
        target: format!("http://{addr}"),
        a: id("alice", false),
        b: Some(id("bob", false)),
        admin: Some(id("root", true)),
        budget: 400,
        rate: 200,
        allow_unsafe: true,
    }
}

#[tokio::test]
async fn every_planted_flaw_is_found() {
    let flaws = sample::Flaws::all();
    let addr = sample::start(flaws).await;
    let r = scan(&spec(), &options(&flaws, addr)).await.unwrap();
    let found: BTreeSet<&str> = r.findings.iter().map(|f| f.check).collect();
    let want: BTreeSet<&str> = [
        "auth.missing",
        "jwt.alg_none",
        "jwt.no_signature",
        "jwt.not_verified",
        "jwt.weak_secret",
        "bola.read",
        "bfla",
        "mass_assignment",
        "injection.sql",
        "ratelimit.none",
        "cors.credentials",
        "data.excess",
        "headers.nosniff",
        "headers.cache",
    ]
    .into_iter()
    .collect();
    assert_eq!(found, want, "{}", r.text());
    assert!(
        r.findings.iter().all(|f| !f.evidence.is_empty()),
        "every finding has evidence"
    );
    assert!(r.requests <= 400);
    // the secret is not printed whole, nor are tokens
    let text = r.text();
    assert!(
        !text.contains(flaws.secret()),
        "the guessed secret is masked"
    );
    assert!(!text.contains(&sample::token(&flaws, "alice", false)));
    // with the SQL flaw fixed, the verbose error handler is what shows
    let only_verbose = sample::Flaws {
        sqli: false,
        ..sample::Flaws::all()
    };
    let addr = sample::start(only_verbose).await;
    let r = scan(&spec(), &options(&only_verbose, addr)).await.unwrap();
    assert!(
        r.findings.iter().any(|f| f.check == "errors.verbose"),
        "{}",
        r.text()
    );
    assert!(!r.findings.iter().any(|f| f.check == "injection.sql"));
}

#[tokio::test]
async fn the_fixed_variant_gives_no_finding() {
    let flaws = sample::Flaws::default();
    let addr = sample::start(flaws).await;
    let r = scan(&spec(), &options(&flaws, addr)).await.unwrap();
    assert!(r.findings.is_empty(), "{}", r.text());
    assert!(r.skipped.is_empty(), "{:?}", r.skipped);
}

#[tokio::test]
async fn unsafe_methods_need_permission_and_the_budget_is_kept() {
    let flaws = sample::Flaws::all();
    let addr = sample::start(flaws).await;
    let mut o = options(&flaws, addr);
    o.allow_unsafe = false;
    o.budget = 12;
    let r = scan(&spec(), &o).await.unwrap();
    assert!(r.requests <= 13, "{} requests", r.requests);
    assert!(!r.findings.iter().any(|f| f.check == "mass_assignment"));
    assert!(
        r.skipped.iter().any(|s| s.contains("budget")),
        "{:?}",
        r.skipped
    );
}
