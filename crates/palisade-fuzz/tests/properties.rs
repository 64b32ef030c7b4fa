//! Every fuzz property driven by a seeded generator: the same inputs on every run, so a
//! failure here is reproducible, and each CI run covers some ground even without a fuzzer.
//! The coverage-guided runs are `cargo fuzz run TARGET` in `fuzz/` (docs/fuzzing.md).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use palisade_testkit::Rng;

fn drive(name: &str, seed: u64, runs: usize, max_len: usize, property: fn(&[u8])) {
    let mut rng = Rng(seed);
    for i in 0..runs {
        let input = rng.input(max_len);
        let r = std::panic::catch_unwind(|| property(&input));
        assert!(r.is_ok(), "{name}: run {i} failed on input {input:?}");
    }
}

#[test]
fn path_matcher() {
    drive(
        "path_match",
        0x9e37_79b9_7f4a_7c15,
        20_000,
        64,
        palisade_fuzz::path_match,
    );
}

#[test]
fn canonical_path() {
    drive(
        "canonical_path",
        0x5bd1_e995_7f4a_7c15,
        20_000,
        48,
        palisade_fuzz::canonical_path,
    );
}

#[test]
fn json_limits_agree_with_the_parser() {
    drive(
        "json_limits",
        0xdead_beef_cafe_f00d,
        20_000,
        256,
        palisade_fuzz::json_limits,
    );
}

#[test]
fn form_readers() {
    drive(
        "forms",
        0x0123_4567_89ab_cdef,
        20_000,
        256,
        palisade_fuzz::forms,
    );
}

#[test]
fn jws_parser() {
    drive(
        "jws",
        0x5555_aaaa_3333_cccc,
        20_000,
        256,
        palisade_fuzz::jws,
    );
    // text shaped like a token, not just noise
    let mut rng = Rng(7);
    for _ in 0..5_000 {
        let b64 = |rng: &mut Rng| {
            let raw = rng.input(48);
            let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            raw.iter()
                .map(|b| char::from(alphabet[usize::from(*b) % 64]))
                .collect::<String>()
        };
        let headers = [
            "eyJhbGciOiJub25lIn0",
            "eyJhbGciOiJIUzI1NiJ9",
            "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ",
        ];
        let h = headers[(rng.next_u64() % 3) as usize];
        let token = format!("{h}.{}.{}", b64(&mut rng), b64(&mut rng));
        palisade_fuzz::jws(token.as_bytes());
    }
}

#[test]
fn injection_detector() {
    drive(
        "detect",
        0x1357_9bdf_2468_ace0,
        10_000,
        512,
        palisade_fuzz::detect,
    );
}

/// The generator does produce documents the parser accepts, or the json_limits property
/// would only ever test the scanner on garbage.
#[test]
fn the_json_generator_makes_valid_documents() {
    let mut rng = Rng(42);
    let valid = (0..2_000)
        .filter(|_| {
            serde_json::from_str::<serde_json::Value>(&palisade_fuzz::json_text(&rng.input(128)))
                .is_ok()
        })
        .count();
    assert!(
        valid > 100,
        "only {valid} of 2000 generated documents parse"
    );
}

#[test]
fn websocket_frame_reader() {
    drive(
        "websocket_frames",
        0x1357_9bdf_2468_ace0,
        20_000,
        24,
        palisade_fuzz::websocket_frames,
    );
    // heads of every length form, masked and not, built on purpose
    let mut rng = Rng(11);
    for _ in 0..5_000 {
        let mut f = rng.input(2);
        f.resize(2, 0);
        let long = rng.input(12);
        f.extend_from_slice(&long);
        palisade_fuzz::websocket_frames(&f);
    }
}
