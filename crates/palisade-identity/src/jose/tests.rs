#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use palisade_testkit::jwt::{b64url, SigningKey};
use serde_json::json;

use super::*;

fn keys(k: &SigningKey) -> Vec<Jwk> {
    vec![Jwk::from_json(&k.jwk()).unwrap().unwrap()]
}

fn check(token: &str, keys: &[Jwk], allowed: &[Alg]) -> Result<Verified, JoseError> {
    parse(token, DEFAULT_MAX_TOKEN_BYTES)?.verify(keys, allowed)
}

fn unsigned(header: &serde_json::Value, sig: &str) -> String {
    format!(
        "{}.{}.{sig}",
        b64url(header.to_string().as_bytes()),
        b64url(br#"{"sub":"mallory"}"#)
    )
}

#[test]
fn every_supported_algorithm_verifies_its_own_key() {
    let cases = [
        (
            SigningKey::rsa("r"),
            ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"].as_slice(),
        ),
        (SigningKey::es256("e"), ["ES256"].as_slice()),
        (SigningKey::es384("e3"), ["ES384"].as_slice()),
        (SigningKey::ed25519("d"), ["EdDSA"].as_slice()),
        (
            SigningKey::hmac("h", b"0123456789abcdef0123456789abcdef"),
            ["HS256", "HS384", "HS512"].as_slice(),
        ),
    ];
    for (k, algs) in &cases {
        for alg in *algs {
            let t = k.token(alg, &json!({"sub": "alice"}));
            let all: Vec<Alg> = Alg::ASYMMETRIC
                .iter()
                .copied()
                .chain([Alg::HS256, Alg::HS384, Alg::HS512])
                .collect();
            let v = check(&t, &keys(k), &all).unwrap_or_else(|e| panic!("{alg}: {e}"));
            assert_eq!(v.alg.name(), *alg);
            // not in the allow-list: refused
            let others: Vec<Alg> = all.iter().copied().filter(|a| a.name() != *alg).collect();
            assert!(
                matches!(
                    check(&t, &keys(k), &others),
                    Err(JoseError::AlgNotAllowed(_))
                ),
                "{alg}"
            );
        }
    }
}

#[test]
fn alg_none_in_every_casing_is_refused() {
    let k = SigningKey::rsa("r");
    for none in ["none", "None", "NONE", "nOnE", "NoNe"] {
        for sig in ["", "AAAA"] {
            let t = unsigned(&json!({"alg": none, "kid": "r"}), sig);
            let e = check(&t, &keys(&k), &Alg::ASYMMETRIC).unwrap_err();
            assert!(
                matches!(e, JoseError::AlgNone | JoseError::Malformed(_)),
                "{none}/{sig}: {e}"
            );
        }
    }
    // and with a signature present, alg none is still its own refusal
    assert_eq!(
        check(
            &unsigned(&json!({"alg": "none"}), "AAAA"),
            &keys(&k),
            &Alg::ASYMMETRIC
        )
        .unwrap_err(),
        JoseError::AlgNone
    );
}

#[test]
fn rs_to_hs_key_confusion_is_refused() {
    // the attacker signs with HS256 using the issuer's public RSA key as the secret
    let rsa = SigningKey::rsa("r");
    let public_pem_like = rsa.jwk().to_string();
    let forged =
        SigningKey::hmac("r", public_pem_like.as_bytes()).token("HS256", &json!({"sub": "admin"}));
    let all: Vec<Alg> = Alg::ASYMMETRIC
        .iter()
        .copied()
        .chain([Alg::HS256])
        .collect();
    // even with HS256 allowed, an RSA key never verifies an HMAC
    assert_eq!(
        check(&forged, &keys(&rsa), &all).unwrap_err(),
        JoseError::NoKey
    );
    assert!(matches!(
        check(&forged, &keys(&rsa), &Alg::ASYMMETRIC).unwrap_err(),
        JoseError::AlgNotAllowed(_)
    ));
}

#[test]
fn headers_that_choose_their_own_key_are_refused() {
    let k = SigningKey::es256("e");
    for (name, value) in [
        ("jku", json!("https://attacker.example/jwks.json")),
        ("x5u", json!("https://attacker.example/cert.pem")),
        ("jwk", k.jwk()),
        ("x5c", json!(["MIIB"])),
    ] {
        let mut h = json!({"alg": "ES256", "kid": "e"});
        h[name] = value;
        let t = k.token_with_header(&h, &json!({"sub": "a"}));
        assert_eq!(
            check(&t, &keys(&k), &Alg::ASYMMETRIC).unwrap_err(),
            JoseError::UntrustedHeader(name)
        );
    }
    let t = k.token_with_header(
        &json!({"alg": "ES256", "kid": "e", "crit": ["exp"], "exp": 1}),
        &json!({}),
    );
    assert_eq!(
        check(&t, &keys(&k), &Alg::ASYMMETRIC).unwrap_err(),
        JoseError::Critical
    );
    let t = k.token_with_header(
        &json!({"alg": "ES256", "kid": "e", "b64": false}),
        &json!({}),
    );
    assert_eq!(
        check(&t, &keys(&k), &Alg::ASYMMETRIC).unwrap_err(),
        JoseError::Critical
    );
}

#[test]
fn kid_with_path_or_sql_strings_finds_no_key() {
    let k = SigningKey::es256("e");
    for kid in [
        "../../../../dev/null",
        "' OR '1'='1",
        "e' --",
        "/etc/passwd",
        "e\u{0}",
    ] {
        let t = k.token_with_header(&json!({"alg": "ES256", "kid": kid}), &json!({"sub": "a"}));
        assert_eq!(
            check(&t, &keys(&k), &Alg::ASYMMETRIC).unwrap_err(),
            JoseError::NoKey,
            "{kid:?}"
        );
    }
    let long = "k".repeat(300);
    let t = k.token_with_header(&json!({"alg": "ES256", "kid": long}), &json!({}));
    assert!(matches!(
        check(&t, &keys(&k), &Alg::ASYMMETRIC).unwrap_err(),
        JoseError::Malformed(_)
    ));
}

#[test]
fn ecdsa_r_and_s_zero_and_tampering_are_refused() {
    let k = SigningKey::es256("e");
    let good = k.token("ES256", &json!({"sub": "a"}));
    let head_payload = good.rsplit_once('.').unwrap().0;
    let zero = format!("{head_payload}.{}", b64url(&[0u8; 64]));
    assert_eq!(
        check(&zero, &keys(&k), &Alg::ASYMMETRIC).unwrap_err(),
        JoseError::BadSignature
    );
    // tampered payload, same signature
    let parts: Vec<&str> = good.split('.').collect();
    let t = format!(
        "{}.{}.{}",
        parts[0],
        b64url(br#"{"sub":"admin"}"#),
        parts[2]
    );
    assert_eq!(
        check(&t, &keys(&k), &Alg::ASYMMETRIC).unwrap_err(),
        JoseError::BadSignature
    );
    // another key of the same type
    let other = SigningKey::es256("e");
    assert_eq!(
        check(&good, &keys(&other), &Alg::ASYMMETRIC).unwrap_err(),
        JoseError::BadSignature
    );
}

#[test]
fn truncated_garbage_and_huge_tokens_are_refused_without_panic() {
    let k = SigningKey::rsa("r");
    let good = k.token("RS256", &json!({"sub": "a"}));
    for cut in [0, 1, 10, good.len() / 2, good.len() - 1] {
        assert!(
            check(&good[..cut], &keys(&k), &Alg::ASYMMETRIC).is_err(),
            "cut {cut}"
        );
    }
    for junk in [
        "",
        ".",
        "..",
        "...",
        "a.b.c",
        "a.b.c.d",
        "eyJ.eyJ.eyJ",
        "!!!.***.###",
        "\u{0}\u{1}.x.y",
    ] {
        assert!(
            check(junk, &keys(&k), &Alg::ASYMMETRIC).is_err(),
            "{junk:?}"
        );
    }
    let huge = format!("{}.{}.{}", "a".repeat(50_000), "b".repeat(50_000), "c");
    assert_eq!(
        check(&huge, &keys(&k), &Alg::ASYMMETRIC).unwrap_err(),
        JoseError::TooLarge
    );
    // a header that is JSON but not an object
    let t = format!("{}.{}.AAAA", b64url(b"[1,2]"), b64url(b"{}"));
    assert!(matches!(
        check(&t, &keys(&k), &Alg::ASYMMETRIC).unwrap_err(),
        JoseError::Malformed(_)
    ));
}

#[test]
fn keys_not_meant_for_signatures_are_not_used() {
    let k = SigningKey::es256("e");
    let t = k.token("ES256", &json!({}));
    let mut jwk = k.jwk();
    jwk["use"] = json!("enc");
    let enc = vec![Jwk::from_json(&jwk).unwrap().unwrap()];
    assert_eq!(
        check(&t, &enc, &Alg::ASYMMETRIC).unwrap_err(),
        JoseError::NoKey
    );
    let mut jwk = k.jwk();
    jwk["key_ops"] = json!(["sign"]);
    let ops = vec![Jwk::from_json(&jwk).unwrap().unwrap()];
    assert_eq!(
        check(&t, &ops, &Alg::ASYMMETRIC).unwrap_err(),
        JoseError::NoKey
    );
    // a key pinned to another algorithm: only that one
    let mut jwk = SigningKey::rsa("r").jwk();
    jwk["alg"] = json!("PS256");
    let pinned = Jwk::from_json(&jwk).unwrap().unwrap();
    assert!(!pinned.fits(Alg::RS256) && !pinned.fits(Alg::PS512));
    assert!(pinned.fits(Alg::PS256));
    // an encryption key is not a verification key
    jwk["alg"] = json!("RSA-OAEP-256");
    assert!(Jwk::from_json(&jwk).unwrap().is_none());
}
