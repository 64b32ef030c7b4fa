//! Encryption at rest of the embedded store: every entry's name and value are sealed, so the
//! file read raw shows no counter name (consumer, client address, object id), value or key.
//!
//! - Names: the table key is `e` + HMAC-SHA256 (under an index key) of the name's scope (the
//!   part up to its second `\x1f`, what prefix scans ask for) and of the whole name, both
//!   truncated to 16 bytes, in hex: lookups and scans by scope still work, names do not show.
//! - Values: AES-256-GCM under a data key, random nonce, the table key as associated data
//!   (an entry moved to another name fails), the name inside the plaintext (what scans give
//!   back). Format: `1`, data-key id (u32), nonce, ciphertext.
//! - Keys: the index key and every data key are random, stored wrapped (AES-256-GCM) by the
//!   key-encryption key from config (`runtime.state_key`). Rotation: a new key-encryption
//!   key re-wraps them all, and a fresh data key takes the new writes; the old data keys stay
//!   to read what they wrote. A store no given key opens is refused, never re-created.

use std::collections::HashMap;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::{digest, hmac, rand};

/// A key-encryption key: 32 bytes from config.
#[derive(Clone)]
pub struct Kek {
    bytes: zeroize::Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kek({})", self.fingerprint())
    }
}

impl Kek {
    /// From 64 hex digits.
    pub fn from_hex(text: &str) -> Option<Kek> {
        let k = palisade_core::hex::decode32(text.trim())?;
        Some(Kek {
            bytes: zeroize::Zeroizing::new(k),
        })
    }

    /// A short public name of the key (the first bytes of its SHA-256), for logs.
    pub fn fingerprint(&self) -> String {
        let d = digest::digest(&digest::SHA256, &self.bytes[..]);
        palisade_core::hex::encode(d.as_ref().get(..4).unwrap_or_default())
    }

    /// Seals a message (a record in a shared store such as Redis) under a key derived from
    /// this one for `purpose`, which is also bound as associated data (a record moved to
    /// another purpose fails): `1`, nonce, ciphertext and tag.
    pub fn seal_message(&self, purpose: &str, plain: &[u8]) -> Result<Vec<u8>, String> {
        let mut out = vec![b'1'];
        out.extend(seal(&self.derived(purpose)?, purpose.as_bytes(), plain)?);
        Ok(out)
    }

    /// Opens what [`Kek::seal_message`] sealed for `purpose`; `None` when it was sealed under
    /// another key or purpose, or changed.
    pub fn open_message(&self, purpose: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        let rest = sealed.strip_prefix(b"1")?;
        open(&self.derived(purpose).ok()?, purpose.as_bytes(), rest)
    }

    fn derived(&self, purpose: &str) -> Result<LessSafeKey, String> {
        let k = hmac::Key::new(hmac::HMAC_SHA256, &self.bytes[..]);
        let tag = hmac::sign(&k, format!("palisade message key\x1f{purpose}").as_bytes());
        UnboundKey::new(&AES_256_GCM, tag.as_ref())
            .map(LessSafeKey::new)
            .map_err(|_| "bad key".to_string())
    }

    fn aead(&self) -> Result<LessSafeKey, String> {
        UnboundKey::new(&AES_256_GCM, &self.bytes[..])
            .map(LessSafeKey::new)
            .map_err(|_| "bad key".to_string())
    }
}

/// The keys the config gives: the current one, and earlier ones a store may still be wrapped in.
#[derive(Debug, Clone, Default)]
pub struct StateKeys {
    /// Wraps every key from now on; `None`: the store is not encrypted.
    pub current: Option<Kek>,
    /// Accepted to open a store, which is then re-wrapped under `current`.
    pub previous: Vec<Kek>,
}

impl StateKeys {
    /// Opens a message sealed under the current key or an earlier one.
    pub fn open_message(&self, purpose: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        self.current
            .iter()
            .chain(&self.previous)
            .find_map(|k| k.open_message(purpose, sealed))
    }
}

fn random32() -> Result<[u8; 32], String> {
    let mut k = [0u8; 32];
    rand::fill(&mut k).map_err(|_| "no randomness".to_string())?;
    Ok(k)
}

fn seal(key: &LessSafeKey, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, String> {
    let mut nonce = [0u8; 12];
    rand::fill(&mut nonce).map_err(|_| "no randomness".to_string())?;
    let mut buf = plain.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut buf,
    )
    .map_err(|_| "sealing failed".to_string())?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buf);
    Ok(out)
}

fn open(key: &LessSafeKey, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    let (nonce, ct) = sealed.split_at_checked(12)?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buf = ct.to_vec();
    let plain = key.open_in_place(nonce, Aad::from(aad), &mut buf).ok()?;
    Some(plain.to_vec())
}

/// The wrapped keys as the store's meta table holds them.
pub type Meta = HashMap<String, Vec<u8>>;

/// The open keys of an encrypted store.
pub struct Crypt {
    index: hmac::Key,
    index_raw: zeroize::Zeroizing<[u8; 32]>,
    data: HashMap<u32, (LessSafeKey, zeroize::Zeroizing<[u8; 32]>)>,
    active: u32,
    /// The fingerprint of the key-encryption key the meta is wrapped under.
    pub kek: String,
}

impl std::fmt::Debug for Crypt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Crypt")
            .field("data_keys", &self.data.len())
            .field("active", &self.active)
            .field("kek", &self.kek)
            .finish()
    }
}

const INDEX: &str = "index";
const ACTIVE: &str = "active";

fn data_name(id: u32) -> String {
    format!("data:{id}")
}

impl Crypt {
    /// Fresh keys for a new store, and their meta entries wrapped under `kek`.
    pub fn create(kek: &Kek) -> Result<(Crypt, Meta), String> {
        let index = random32()?;
        let data = random32()?;
        let c = Crypt::from_raw(index, HashMap::from([(1, data)]), 1, kek)?;
        let meta = c.wrap_all(kek)?;
        Ok((c, meta))
    }

    fn from_raw(
        index: [u8; 32],
        data: HashMap<u32, [u8; 32]>,
        active: u32,
        kek: &Kek,
    ) -> Result<Crypt, String> {
        let mut keys = HashMap::new();
        for (id, raw) in data {
            let k = UnboundKey::new(&AES_256_GCM, &raw)
                .map(LessSafeKey::new)
                .map_err(|_| "bad data key".to_string())?;
            keys.insert(id, (k, zeroize::Zeroizing::new(raw)));
        }
        Ok(Crypt {
            index: hmac::Key::new(hmac::HMAC_SHA256, &index),
            index_raw: zeroize::Zeroizing::new(index),
            data: keys,
            active,
            kek: kek.fingerprint(),
        })
    }

    /// Every key wrapped under `kek`, as meta entries.
    pub fn wrap_all(&self, kek: &Kek) -> Result<Meta, String> {
        let w = kek.aead()?;
        let mut m = Meta::new();
        m.insert(
            INDEX.into(),
            seal(&w, INDEX.as_bytes(), &self.index_raw[..])?,
        );
        for (id, (_, raw)) in &self.data {
            let n = data_name(*id);
            m.insert(n.clone(), seal(&w, n.as_bytes(), &raw[..])?);
        }
        m.insert(ACTIVE.into(), self.active.to_be_bytes().to_vec());
        Ok(m)
    }

    /// Opens the keys of `meta` with the first of `keys` that unwraps them; which one it was.
    pub fn unwrap(meta: &Meta, keys: &[&Kek]) -> Result<(Crypt, usize), String> {
        let active = meta
            .get(ACTIVE)
            .and_then(|b| <[u8; 4]>::try_from(b.as_slice()).ok())
            .map(u32::from_be_bytes)
            .ok_or("the store's key table is damaged (no active key)")?;
        let raw = |w: &LessSafeKey, name: &str| -> Option<[u8; 32]> {
            let b = open(w, name.as_bytes(), meta.get(name)?)?;
            <[u8; 32]>::try_from(b.as_slice()).ok()
        };
        for (i, kek) in keys.iter().enumerate() {
            let w = kek.aead()?;
            let Some(index) = raw(&w, INDEX) else {
                continue;
            };
            let mut data = HashMap::new();
            for name in meta.keys().filter(|k| k.starts_with("data:")) {
                let id: u32 = name
                    .strip_prefix("data:")
                    .and_then(|s| s.parse().ok())
                    .ok_or("the store's key table is damaged")?;
                let k = raw(&w, name)
                    .ok_or("the store's key table is damaged (a data key does not unwrap)")?;
                data.insert(id, k);
            }
            if !data.contains_key(&active) {
                return Err(
                    "the store's key table is damaged (the active data key is missing)".into(),
                );
            }
            return Ok((Crypt::from_raw(index, data, active, kek)?, i));
        }
        Err("none of the configured keys opens it".into())
    }

    /// A fresh data key for new writes (rotation); the old ones stay to read.
    pub fn add_data_key(&mut self, kek: &Kek) -> Result<(), String> {
        let id = self.data.keys().max().copied().unwrap_or(0) + 1;
        let raw = random32()?;
        let k = UnboundKey::new(&AES_256_GCM, &raw)
            .map(LessSafeKey::new)
            .map_err(|_| "bad data key".to_string())?;
        self.data.insert(id, (k, zeroize::Zeroizing::new(raw)));
        self.active = id;
        self.kek = kek.fingerprint();
        Ok(())
    }

    fn tag(&self, text: &str) -> String {
        let t = hmac::sign(&self.index, text.as_bytes());
        palisade_core::hex::encode(t.as_ref().get(..16).unwrap_or_default())
    }

    /// The scope of a name: up to its second `\x1f` (or its first, or nothing).
    fn scope(name: &str) -> &str {
        let mut seps = name.match_indices('\u{1f}').map(|(i, _)| i);
        match (seps.next(), seps.next()) {
            (_, Some(j)) | (Some(j), None) => name.get(..=j).unwrap_or(""),
            (None, None) => "",
        }
    }

    /// The table key of a name.
    pub fn table_key(&self, name: &str) -> String {
        format!("e{}.{}", self.tag(Self::scope(name)), self.tag(name))
    }

    /// The table-key prefix of every name starting with `prefix`, which must end a scope
    /// (end with `\x1f`): `None` otherwise.
    pub fn table_prefix(&self, prefix: &str) -> Option<String> {
        (Self::scope(prefix) == prefix).then(|| format!("e{}.", self.tag(prefix)))
    }

    /// Seals a value of `name` stored under `table_key`.
    pub fn seal_value(&self, table_key: &str, name: &str, value: &[u8]) -> Result<Vec<u8>, String> {
        let (k, _) = self.data.get(&self.active).ok_or("no active data key")?;
        let len = u32::try_from(name.len()).map_err(|_| "name too long")?;
        let mut plain = len.to_be_bytes().to_vec();
        plain.extend_from_slice(name.as_bytes());
        plain.extend_from_slice(value);
        let mut out = vec![1u8];
        out.extend_from_slice(&self.active.to_be_bytes());
        out.extend_from_slice(&seal(k, table_key.as_bytes(), &plain)?);
        Ok(out)
    }

    /// Opens a stored value: its name and value. `None`: not ours, or tampered with.
    pub fn open_value(&self, table_key: &str, stored: &[u8]) -> Option<(String, Vec<u8>)> {
        let (&version, rest) = stored.split_first()?;
        if version != 1 {
            return None;
        }
        let (id, sealed) = rest.split_at_checked(4)?;
        let id = u32::from_be_bytes(<[u8; 4]>::try_from(id).ok()?);
        let (k, _) = self.data.get(&id)?;
        let plain = open(k, table_key.as_bytes(), sealed)?;
        let (len, rest) = plain.split_at_checked(4)?;
        let len = usize::try_from(u32::from_be_bytes(<[u8; 4]>::try_from(len).ok()?)).ok()?;
        let (name, value) = rest.split_at_checked(len)?;
        Some((String::from_utf8(name.to_vec()).ok()?, value.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kek(b: u8) -> Kek {
        Kek::from_hex(&format!("{b:02x}").repeat(32)).unwrap_or_else(|| unreachable!())
    }

    #[test]
    fn messages_are_sealed_per_purpose_and_opened_by_earlier_keys() {
        let sealed = kek(1)
            .seal_message("fleet:config", b"routes: []")
            .unwrap_or_default();
        assert!(!String::from_utf8_lossy(&sealed).contains("routes"));
        assert_eq!(
            kek(1).open_message("fleet:config", &sealed).as_deref(),
            Some(&b"routes: []"[..])
        );
        assert_eq!(kek(1).open_message("fleet:candidate", &sealed), None);
        assert_eq!(kek(2).open_message("fleet:config", &sealed), None);
        let mut changed = sealed.clone();
        if let Some(b) = changed.last_mut() {
            *b ^= 1;
        }
        assert_eq!(kek(1).open_message("fleet:config", &changed), None);
        let keys = StateKeys {
            current: Some(kek(2)),
            previous: vec![kek(1)],
        };
        assert!(keys.open_message("fleet:config", &sealed).is_some());
    }

    #[test]
    fn names_and_values_are_sealed_and_bound_to_their_place() {
        let (c, meta) = Crypt::create(&kek(1)).unwrap_or_else(|e| panic!("{e}"));
        let name = "quota\u{1f}orders/0\u{1f}alice@example.com";
        let tk = c.table_key(name);
        assert!(!tk.contains("alice") && !tk.contains("quota"));
        assert!(tk.starts_with(
            &c.table_prefix("quota\u{1f}orders/0\u{1f}")
                .unwrap_or_default()
        ));
        assert_eq!(c.table_prefix("quota\u{1f}orders"), None);
        let v = c.seal_value(&tk, name, b"counter-42").unwrap_or_default();
        assert!(!String::from_utf8_lossy(&v).contains("alice"));
        assert_eq!(
            c.open_value(&tk, &v),
            Some((name.to_string(), b"counter-42".to_vec()))
        );
        // moved to another name, or changed, it does not open
        assert_eq!(
            c.open_value(&c.table_key("quota\u{1f}orders/0\u{1f}bob"), &v),
            None
        );
        let mut bad = v.clone();
        if let Some(b) = bad.last_mut() {
            *b ^= 1;
        }
        assert_eq!(c.open_value(&tk, &bad), None);
        // the wrong key opens nothing; the right one among several does
        assert!(Crypt::unwrap(&meta, &[&kek(2)]).is_err());
        let (c2, which) =
            Crypt::unwrap(&meta, &[&kek(2), &kek(1)]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(which, 1);
        assert_eq!(
            c2.open_value(&tk, &v),
            Some((name.to_string(), b"counter-42".to_vec()))
        );
    }

    #[test]
    fn rotation_rewraps_and_new_writes_use_a_new_data_key() {
        let (mut c, _) = Crypt::create(&kek(1)).unwrap_or_else(|e| panic!("{e}"));
        let old = c.seal_value("t", "n", b"old").unwrap_or_default();
        c.add_data_key(&kek(3)).unwrap_or_else(|e| panic!("{e}"));
        let meta = c.wrap_all(&kek(3)).unwrap_or_else(|e| panic!("{e}"));
        let new = c.seal_value("t", "n", b"new").unwrap_or_default();
        assert_ne!(old.get(1..5), new.get(1..5), "another data key id");
        // only the new key-encryption key opens the re-wrapped table, and reads both
        assert!(Crypt::unwrap(&meta, &[&kek(1)]).is_err());
        let (c3, _) = Crypt::unwrap(&meta, &[&kek(3)]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c3.open_value("t", &old).map(|x| x.1), Some(b"old".to_vec()));
        assert_eq!(c3.open_value("t", &new).map(|x| x.1), Some(b"new".to_vec()));
    }
}
