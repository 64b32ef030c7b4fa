//! Keys and digests written in hex in config files.

/// 32 bytes from 64 hex digits (a 256-bit key, a SHA-256), surrounding blanks ignored.
pub fn decode32(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Bytes as lower-case hex.
pub fn encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip_and_refusals() {
        let k: Vec<u8> = (0u8..32).collect();
        let h = super::encode(&k);
        assert_eq!(super::decode32(&h).map(|a| a.to_vec()), Some(k));
        assert_eq!(super::decode32(" abc "), None);
        assert_eq!(super::decode32(&"zz".repeat(32)), None);
        assert_eq!(super::decode32(&format!("{}é", "a".repeat(62))), None);
    }
}
