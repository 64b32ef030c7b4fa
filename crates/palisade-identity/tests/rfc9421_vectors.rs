//! The test vectors of RFC 9421 (HTTP Message Signatures) Appendix B and §3.2, and the
//! examples of RFC 9530 (Digest Fields), against exactly the code the gateway runs.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use base64::Engine as _;
use http::{HeaderMap, HeaderValue};
use palisade_identity::signature::base::{self, Id, Message};
use palisade_identity::signature::digest::{self, Check};
use palisade_identity::signature::keys::{Alg, SignKey, VerifyKey};

const RSA_PSS_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAr4tmm3r20Wd/PbqvP1s2
+QEtvpuRaV8Yq40gjUR8y2Rjxa6dpG2GXHbPfvMs8ct+Lh1GH45x28Rw3Ry53mm+
oAXjyQ86OnDkZ5N8lYbggD4O3w6M6pAvLkhk95AndTrifbIFPNU8PPMO7OyrFAHq
gDsznjPFmTOtCEcN2Z1FpWgchwuYLPL+Wokqltd11nqqzi+bJ9cvSKADYdUAAN5W
Utzdpiy6LbTgSxP7ociU4Tn0g5I6aDZJ7A8Lzo0KSyZYoA485mqcO0GVAdVw9lq4
aOT9v6d+nb4bnNkQVklLQ3fVAvJm+xdDOp9LCNCN48V2pnDOkFV6+U9nV5oyc6XI
2wIDAQAB
-----END PUBLIC KEY-----";

const ECC_P256_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqIVYZVLCrPZHGHjP17CTW0/+D9Lf
w0EkjqF7xB4FivAxzic30tMM4GF+hR6Dxh71Z50VGGdldkkDXZCnTNnoXQ==
-----END PUBLIC KEY-----";

const ED25519_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=
-----END PUBLIC KEY-----";

const ED25519_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF
-----END PRIVATE KEY-----";

const SHARED_SECRET: &str =
    "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==";

const CONTENT_DIGEST: &str =
    "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:";

/// The test-request of Appendix B.2, with the signature fields given.
fn test_request(input: &str, signature: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("host", "example.com"),
        ("date", "Tue, 20 Apr 2021 02:07:55 GMT"),
        ("content-type", "application/json"),
        ("content-digest", CONTENT_DIGEST),
        ("content-length", "18"),
        ("signature-input", input),
        ("signature", signature),
    ] {
        h.append(k, HeaderValue::from_str(v).unwrap());
    }
    h
}

fn post_foo(h: &HeaderMap) -> Message<'_> {
    Message {
        method: "POST",
        scheme: "https",
        authority: "example.com",
        path: "/foo",
        query: Some("param=Value&Pet=dog"),
        headers: h,
    }
}

/// Verifies the one signature of `h` with `key`, returning its base.
fn verify_one(m: &Message<'_>, key: &VerifyKey) -> (bool, String) {
    let sigs = base::signatures(m.headers).unwrap();
    assert_eq!(sigs.len(), 1);
    let base = sigs[0].base(m).unwrap();
    (key.verify(base.as_bytes(), &sigs[0].value), base)
}

fn rsa_pss() -> VerifyKey {
    VerifyKey::public_pem(Alg::RsaPssSha512, RSA_PSS_PUBLIC).unwrap()
}

#[test]
fn b21_minimal_signature_with_a_nonce() {
    let h = test_request(
        r#"sig-b21=();created=1618884473;keyid="test-key-rsa-pss";nonce="b3k2pp5k7z-50gnwp.yemd""#,
        "sig-b21=:d2pmTvmbncD3xQm8E9ZV2828BjQWGgiwAaw5bAkgibUopemLJcWDy/lkbbHAve4cRAtx31Iq786U7it++wgGxbtRxf8Udx7zFZsckzXaJMkA7ChG52eSkFxykJeNqsrWH5S+oxNFlD4dzVuwe8DhTSja8xxbR/Z2cOGdCbzR72rgFWhzx2VjBqJzsPLMIQKhO4DGezXehhWwE56YCE+O6c0mKZsfxVrogUvA4HELjVKWmAvtl6UnCh8jYzuVG5WSb/QEVPnP5TmcAnLH1g+s++v6d4s8m0gCw1fV5/SITLq9mhho8K3+7EPYTU8IU1bLhdxO5Nyt8C8ssinQ98Xw9Q==:",
    );
    let (ok, base) = verify_one(&post_foo(&h), &rsa_pss());
    assert_eq!(
        base,
        r#""@signature-params": ();created=1618884473;keyid="test-key-rsa-pss";nonce="b3k2pp5k7z-50gnwp.yemd""#
    );
    assert!(ok);
    let sigs = base::signatures(&h).unwrap();
    assert_eq!(
        sigs[0].params.nonce.as_deref(),
        Some("b3k2pp5k7z-50gnwp.yemd")
    );
    assert_eq!(sigs[0].params.created, Some(1618884473));
}

#[test]
fn b22_selective_components_and_a_query_parameter() {
    let h = test_request(
        r#"sig-b22=("@authority" "content-digest" "@query-param";name="Pet");created=1618884473;keyid="test-key-rsa-pss";tag="header-example""#,
        "sig-b22=:LjbtqUbfmvjj5C5kr1Ugj4PmLYvx9wVjZvD9GsTT4F7GrcQEdJzgI9qHxICagShLRiLMlAJjtq6N4CDfKtjvuJyE5qH7KT8UCMkSowOB4+ECxCmT8rtAmj/0PIXxi0A0nxKyB09RNrCQibbUjsLS/2YyFYXEu4TRJQzRw1rLEuEfY17SARYhpTlaqwZVtR8NV7+4UKkjqpcAoFqWFQh62s7Cl+H2fjBSpqfZUJcsIk4N6wiKYd4je2U/lankenQ99PZfB4jY3I5rSV2DSBVkSFsURIjYErOs0tFTQosMTAoxk//0RoKUqiYY8Bh0aaUEb0rQl3/XaVe4bXTugEjHSw==:",
    );
    let (ok, base) = verify_one(&post_foo(&h), &rsa_pss());
    assert_eq!(
        base,
        format!(
            "\"@authority\": example.com\n\"content-digest\": {CONTENT_DIGEST}\n\"@query-param\";name=\"Pet\": dog\n\"@signature-params\": (\"@authority\" \"content-digest\" \"@query-param\";name=\"Pet\");created=1618884473;keyid=\"test-key-rsa-pss\";tag=\"header-example\""
        )
    );
    assert!(ok);
    // the query parameter is part of what was signed
    let m = Message {
        query: Some("param=Value&Pet=cat"),
        ..post_foo(&h)
    };
    assert!(!verify_one(&m, &rsa_pss()).0);
}

#[test]
fn b23_full_coverage() {
    let h = test_request(
        r#"sig-b23=("date" "@method" "@path" "@query" "@authority" "content-type" "content-digest" "content-length");created=1618884473;keyid="test-key-rsa-pss""#,
        "sig-b23=:bbN8oArOxYoyylQQUU6QYwrTuaxLwjAC9fbY2F6SVWvh0yBiMIRGOnMYwZ/5MR6fb0Kh1rIRASVxFkeGt683+qRpRRU5p2voTp768ZrCUb38K0fUxN0O0iC59DzYx8DFll5GmydPxSmme9v6ULbMFkl+V5B1TP/yPViV7KsLNmvKiLJH1pFkh/aYA2HXXZzNBXmIkoQoLd7YfW91kE9o/CCoC1xMy7JA1ipwvKvfrs65ldmlu9bpG6A9BmzhuzF8Eim5f8ui9eH8LZH896+QIF61ka39VBrohr9iyMUJpvRX2Zbhl5ZJzSRxpJyoEZAFL2FUo5fTIztsDZKEgM4cUA==:",
    );
    let (ok, base) = verify_one(&post_foo(&h), &rsa_pss());
    assert!(base.starts_with("\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\"@method\": POST\n\"@path\": /foo\n\"@query\": ?param=Value&Pet=dog\n"));
    assert!(ok);
    // every covered part is signed: a changed method, path, header or digest fails
    let tampered = [
        Message {
            method: "PUT",
            ..post_foo(&h)
        },
        Message {
            path: "/foo2",
            ..post_foo(&h)
        },
        Message {
            authority: "example.org",
            ..post_foo(&h)
        },
    ];
    for m in tampered {
        assert!(!verify_one(&m, &rsa_pss()).0, "{m:?}");
    }
    let mut h2 = h.clone();
    h2.insert("content-type", HeaderValue::from_static("text/plain"));
    assert!(!verify_one(&post_foo(&h2), &rsa_pss()).0);
}

#[test]
fn section_3_2_worked_example() {
    let h = test_request(
        r#"sig1=("@method" "@authority" "@path" "content-digest" "content-length" "content-type");created=1618884473;keyid="test-key-rsa-pss""#,
        "sig1=:HIbjHC5rS0BYaa9v4QfD4193TORw7u9edguPh0AW3dMq9WImrlFrCGUDih47vAxi4L2YRZ3XMJc1uOKk/J0ZmZ+wcta4nKIgBkKq0rM9hs3CQyxXGxHLMCy8uqK488o+9jrptQ+xFPHK7a9sRL1IXNaagCNN3ZxJsYapFj+JXbmaI5rtAdSfSvzPuBCh+ARHBmWuNo1UzVVdHXrl8ePL4cccqlazIJdC4QEjrF+Sn4IxBQzTZsL9y9TP5FsZYzHvDqbInkTNigBcE9cKOYNFCn4D/WM7F6TNuZO9EgtzepLWcjTymlHzK7aXq6Am6sfOrpIC49yXjj3ae6HRalVc/g==:",
    );
    assert!(verify_one(&post_foo(&h), &rsa_pss()).0);
}

fn secret() -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(SHARED_SECRET)
        .unwrap()
}

/// Signs `components` as the gateway would and returns (Signature-Input member, signature).
fn sign(key: &SignKey, m: &Message<'_>, components: &[Id], keyid: &str) -> (String, String) {
    let (sig, input) = base::for_signing(components, 1618884473, keyid, None, None, None).unwrap();
    let b = sig.base(m).unwrap();
    let s = key.sign(b.as_bytes()).unwrap();
    (input, base64::engine::general_purpose::STANDARD.encode(s))
}

fn field(n: &str) -> Id {
    Id::Field {
        name: n.into(),
        sf: false,
        key: None,
        bs: false,
    }
}

#[test]
fn b25_hmac_is_reproduced_and_verified() {
    let h = test_request(
        r#"sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret""#,
        "sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:",
    );
    let key = VerifyKey::secret(Alg::HmacSha256, &secret()).unwrap();
    assert!(verify_one(&post_foo(&h), &key).0);
    let signer = SignKey::secret(&secret()).unwrap();
    let (input, sig) = sign(
        &signer,
        &post_foo(&h),
        &[field("date"), Id::Authority, field("content-type")],
        "test-shared-secret",
    );
    assert_eq!(
        input,
        r#"("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret""#
    );
    assert_eq!(sig, "pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=");
    // a wrong secret fails
    let other = VerifyKey::secret(Alg::HmacSha256, &[7u8; 64]).unwrap();
    assert!(!verify_one(&post_foo(&h), &other).0);
}

#[test]
fn b26_ed25519_is_reproduced_and_verified() {
    let h = test_request(
        r#"sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519""#,
        "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:",
    );
    let key = VerifyKey::public_pem(Alg::Ed25519, ED25519_PUBLIC).unwrap();
    assert!(verify_one(&post_foo(&h), &key).0);
    let signer = SignKey::private_pem(Alg::Ed25519, ED25519_PRIVATE).unwrap();
    let (_, sig) = sign(
        &signer,
        &post_foo(&h),
        &[
            field("date"),
            Id::Method,
            Id::Path,
            Id::Authority,
            field("content-type"),
            field("content-length"),
        ],
        "test-key-ed25519",
    );
    assert_eq!(
        sig,
        "wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw=="
    );
}

#[test]
fn b3_tls_terminating_proxy_with_ecdsa() {
    let cert = ":MIIBqDCCAU6gAwIBAgIBBzAKBggqhkjOPQQDAjA6MRswGQYDVQQKDBJMZXQncyBBdXRoZW50aWNhdGUxGzAZBgNVBAMMEkxBIEludGVybWVkaWF0ZSBDQTAeFw0yMDAxMTQyMjU1MzNaFw0yMTAxMjMyMjU1MzNaMA0xCzAJBgNVBAMMAkJDMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE8YnXXfaUgmnMtOXU/IncWalRhebrXmckC8vdgJ1p5Be5F/3YC8OthxM4+k1M6aEAEFcGzkJiNy6J84y7uzo9M6NyMHAwCQYDVR0TBAIwADAfBgNVHSMEGDAWgBRm3WjLa38lbEYCuiCPct0ZaSED2DAOBgNVHQ8BAf8EBAMCBsAwEwYDVR0lBAwwCgYIKwYBBQUHAwIwHQYDVR0RAQH/BBMwEYEPYmRjQGV4YW1wbGUuY29tMAoGCCqGSM49BAMCA0gAMEUCIBHda/r1vaL6G3VliL4/Di6YK0Q6bMjeSkC3dFCOOB8TAiEAx/kHSB4urmiZ0NX5r5XarmPk0wmuydBVoU4hBVZ1yhk=:";
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("host", "service.internal.example"),
        ("date", "Tue, 20 Apr 2021 02:07:55 GMT"),
        ("content-type", "application/json"),
        ("content-length", "18"),
        ("client-cert", cert),
        ("signature-input", r#"ttrp=("@path" "@query" "@method" "@authority" "client-cert");created=1618884473;keyid="test-key-ecc-p256""#),
        ("signature", "ttrp=:xVMHVpawaAC/0SbHrKRs9i8I3eOs5RtTMGCWXm/9nvZzoHsIg6Mce9315T6xoklyy0yzhD9ah4JHRwMLOgmizw==:"),
    ] {
        h.append(k, HeaderValue::from_str(v).unwrap());
    }
    let m = Message {
        authority: "service.internal.example",
        ..post_foo(&h)
    };
    let key = VerifyKey::public_pem(Alg::EcdsaP256Sha256, ECC_P256_PUBLIC).unwrap();
    assert!(verify_one(&m, &key).0);
    // the same key refuses to be read as another algorithm's
    assert!(VerifyKey::public_pem(Alg::Ed25519, ECC_P256_PUBLIC).is_err());
    assert!(VerifyKey::public_pem(Alg::RsaPssSha512, ECC_P256_PUBLIC).is_err());
    assert!(VerifyKey::public_pem(Alg::EcdsaP384Sha384, ECC_P256_PUBLIC).is_err());
}

#[test]
fn b4_transformations_that_keep_and_break_the_signature() {
    let key = VerifyKey::public_pem(Alg::Ed25519, ED25519_PUBLIC).unwrap();
    let sig_fields = [
        ("signature-input", r#"transform=("@method" "@path" "@authority" "accept");created=1618884473;keyid="test-key-ed25519""#),
        ("signature", "transform=:ZT1kooQsEHpZ0I1IjCqtQppOmIqlJPeo7DHR3SoMn0s5JZ1eRGS0A+vyYP9t/LXlh5QMFFQ6cpLt2m0pmj3NDA==:"),
    ];
    type Case<'a> = (&'a str, &'a str, &'a str, &'a [(&'a str, &'a str)], bool);
    let cases: [Case; 6] = [
        (
            "original",
            "GET",
            "example.org",
            &[("accept", "application/json"), ("accept", "*/*")],
            true,
        ),
        (
            "added fields",
            "GET",
            "example.org",
            &[
                ("accept", "application/json"),
                ("accept", "*/*"),
                ("accept-language", "en-US,en;q=0.5"),
            ],
            true,
        ),
        (
            "collapsed accept",
            "GET",
            "example.org",
            &[
                ("referer", "https://developer.example.org/demo"),
                ("accept", "application/json, */*"),
            ],
            true,
        ),
        (
            "reordered fields",
            "GET",
            "example.org",
            &[
                ("date", "Fri, 15 Jul 2022 14:24:55 GMT"),
                ("accept", "application/json"),
                ("accept", "*/*"),
            ],
            true,
        ),
        (
            "changed method and authority",
            "POST",
            "example.com",
            &[("accept", "application/json"), ("accept", "*/*")],
            false,
        ),
        (
            "reordered accept values",
            "GET",
            "example.org",
            &[("accept", "*/*"), ("accept", "application/json")],
            false,
        ),
    ];
    for (name, method, authority, fields, valid) in cases {
        let mut h = HeaderMap::new();
        for (k, v) in fields.iter().chain(sig_fields.iter()) {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        let m = Message {
            method,
            scheme: "https",
            authority,
            path: "/demo",
            query: Some("name1=Value1&Name2=value2"),
            headers: &h,
        };
        assert_eq!(verify_one(&m, &key).0, valid, "{name}");
    }
}

#[test]
fn malformed_signature_fields_are_refused_not_skipped() {
    let cases = [
        (r#"sig=("@method");created=1"#, "sig=:AAAA:,,"),
        (r#"sig="not a list""#, "sig=:AAAA:"),
        (r#"sig=("@method")"#, "other=:AAAA:"),
        (r#"sig=("@method")"#, r#"sig="text""#),
        (r#"sig=("@method" "@method")"#, "sig=:AAAA:"),
        (r#"sig=("@status")"#, "sig=:AAAA:"),
        (r#"sig=("@unknown")"#, "sig=:AAAA:"),
        (r#"sig=("Content-Type")"#, "sig=:AAAA:"),
        (r#"sig=("content-type";req)"#, "sig=:AAAA:"),
        (r#"sig=("@method");created="yesterday""#, "sig=:AAAA:"),
    ];
    for (input, sig) in cases {
        let mut h = HeaderMap::new();
        h.insert("signature-input", HeaderValue::from_str(input).unwrap());
        h.insert("signature", HeaderValue::from_str(sig).unwrap());
        assert!(base::signatures(&h).is_err(), "{input} / {sig}");
    }
    let mut h = HeaderMap::new();
    h.insert("signature", HeaderValue::from_static("sig=:AAAA:"));
    assert!(base::signatures(&h).is_err());
    let many: Vec<String> = (0..9).map(|i| format!("s{i}=(\"@method\")")).collect();
    let sigs: Vec<String> = (0..9).map(|i| format!("s{i}=:AAAA:")).collect();
    let mut h = HeaderMap::new();
    h.insert(
        "signature-input",
        HeaderValue::from_str(&many.join(", ")).unwrap(),
    );
    h.insert(
        "signature",
        HeaderValue::from_str(&sigs.join(", ")).unwrap(),
    );
    assert!(base::signatures(&h).is_err());
}

#[test]
fn a_covered_component_the_request_lacks_fails_the_base() {
    let mut h = HeaderMap::new();
    h.insert(
        "signature-input",
        HeaderValue::from_static(r#"sig=("x-missing" "@query-param";name="nope")"#),
    );
    h.insert("signature", HeaderValue::from_static("sig=:AAAA:"));
    let m = post_foo(&h);
    let sigs = base::signatures(&h).unwrap();
    assert!(matches!(sigs[0].base(&m), Err(base::BaseError::Missing(_))));
    // a query parameter given twice cannot be signed alone
    let mut h = HeaderMap::new();
    h.insert(
        "signature-input",
        HeaderValue::from_static(r#"sig=("@query-param";name="a")"#),
    );
    h.insert("signature", HeaderValue::from_static("sig=:AAAA:"));
    let m = Message {
        query: Some("a=1&a=2"),
        ..post_foo(&h)
    };
    let sigs = base::signatures(&h).unwrap();
    assert!(matches!(sigs[0].base(&m), Err(base::BaseError::Invalid(_))));
}

#[test]
fn structured_field_parameters_follow_section_2_1() {
    // RFC 9421 §2.1.1-2.1.3: sf re-serialises, key picks a member, bs wraps each value
    let mut h = HeaderMap::new();
    h.append(
        "example-dict",
        HeaderValue::from_static(" a=1,    b=2;x=1;y=2,   c=(a   b   c)"),
    );
    h.append(
        "example-header",
        HeaderValue::from_static("value, with, lots"),
    );
    h.append("example-header", HeaderValue::from_static("of, commas"));
    h.insert("signature-input", HeaderValue::from_static(r#"sig=("example-dict";sf "example-dict";key="b" "example-dict";key="c" "example-header";bs)"#));
    h.insert("signature", HeaderValue::from_static("sig=:AAAA:"));
    let m = post_foo(&h);
    let b = base::signatures(&h).unwrap()[0].base(&m).unwrap();
    assert!(
        b.contains("\"example-dict\";sf: a=1, b=2;x=1;y=2, c=(a b c)\n"),
        "{b}"
    );
    assert!(b.contains("\"example-dict\";key=\"b\": 2;x=1;y=2\n"), "{b}");
    assert!(b.contains("\"example-dict\";key=\"c\": (a b c)\n"), "{b}");
    assert!(
        b.contains("\"example-header\";bs: :dmFsdWUsIHdpdGgsIGxvdHM=:, :b2YsIGNvbW1hcw==:\n"),
        "{b}"
    );
}

#[test]
fn rfc9530_digests_of_the_example_body() {
    let body = br#"{"hello": "world"}"#;
    let with = |name: &str, v: &str| {
        let mut h = HeaderMap::new();
        h.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
        h
    };
    let sha256 = "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:";
    assert_eq!(digest::content_digest(body), sha256);
    assert_eq!(
        digest::check(&with("content-digest", sha256), body),
        Check::Valid
    );
    assert_eq!(
        digest::check(&with("content-digest", CONTENT_DIGEST), body),
        Check::Valid
    );
    assert_eq!(
        digest::check(
            &with("content-digest", &format!("{sha256}, {CONTENT_DIGEST}")),
            body
        ),
        Check::Valid
    );
    assert_eq!(
        digest::check(&with("repr-digest", sha256), body),
        Check::Valid
    );
    assert_eq!(
        digest::check(
            &with(
                "digest",
                "SHA-256=X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE="
            ),
            body
        ),
        Check::Valid
    );
    assert!(matches!(
        digest::check(&with("content-digest", sha256), b"{\"hello\": \"w0rld\"}"),
        Check::Mismatch(_)
    ));
    // one bad digest among good ones fails
    let bad = "sha-256=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:";
    assert!(matches!(
        digest::check(
            &with("content-digest", &format!("{CONTENT_DIGEST}, {bad}")),
            body
        ),
        Check::Mismatch(_)
    ));
    // insecure or unknown algorithms alone cannot vouch for a body
    assert!(matches!(
        digest::check(
            &with("content-digest", "md5=:kvA3+EQ1qLIRjtBe9WGo6w==:"),
            body
        ),
        Check::Unusable(_)
    ));
    assert!(matches!(
        digest::check(&with("content-digest", "sha-256=abc"), body),
        Check::Unusable(_)
    ));
    assert!(matches!(
        digest::check(&with("content-digest", "(((("), body),
        Check::Unusable(_)
    ));
    assert_eq!(digest::check(&HeaderMap::new(), body), Check::Absent);
    let mut h = with("repr-digest", sha256);
    h.insert("content-encoding", HeaderValue::from_static("gzip"));
    assert!(matches!(digest::check(&h, body), Check::Unusable(_)));
}
