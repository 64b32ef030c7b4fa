//! What a property or parameter name says about it, shared by `audit` (static) and `scan`
//! (active): the words of a name whatever its case style, and the names that take URLs or
//! carry privileges. Names are one signal among others (types and formats come first).

use serde_json::Value;

/// The lower-case words of a name: `imageUrl`, `image_url`, `image-url` and `ImageURL` all
/// give `["image", "url"]`.
pub fn words(name: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = name.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        let prev = i.checked_sub(1).and_then(|j| chars.get(j)).copied();
        let next = chars.get(i + 1).copied();
        let boundary = c.is_uppercase()
            && prev.is_some_and(|p| {
                p.is_lowercase()
                    || p.is_ascii_digit()
                    || (p.is_uppercase() && next.is_some_and(char::is_lowercase))
            });
        if boundary && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Last words that make a string field a URL the server may fetch.
const URL_WORDS: [&str; 9] = [
    "url", "uri", "link", "href", "callback", "webhook", "endpoint", "feed", "src",
];
/// Whole names of fields that commonly hold a URL to fetch (an image or avatar by address).
const URL_NAMES: [&str; 10] = [
    "image",
    "avatar",
    "picture",
    "photo",
    "icon",
    "logo",
    "thumbnail",
    "source",
    "website",
    "redirect",
];

/// Whether a string field of this name and schema takes a URL: by format first
/// (`uri`, `url`, `iri`, `uri-reference`), then by name (`image_url`, `avatarUri`, `callback`,
/// `webhook`, `avatar`, …).
pub fn takes_url(name: &str, schema: &Value) -> bool {
    let format = schema.get("format").and_then(Value::as_str).unwrap_or("");
    if matches!(
        format,
        "uri" | "url" | "iri" | "uri-reference" | "iri-reference"
    ) {
        return true;
    }
    let is_string = match schema.get("type") {
        Some(Value::String(t)) => t == "string",
        Some(Value::Array(a)) => a.iter().any(|t| t == "string"),
        _ => true,
    };
    if !is_string
        || matches!(
            format,
            "email" | "date" | "date-time" | "uuid" | "byte" | "binary"
        )
    {
        return false;
    }
    let w = words(name);
    match w.last() {
        Some(last) => {
            URL_WORDS.contains(&last.as_str())
                || (w.len() == 1 && URL_NAMES.contains(&last.as_str()))
                || matches!(w.as_slice(), [first, second] if URL_NAMES.contains(&first.as_str()) && second == "address")
        }
        None => false,
    }
}

/// Property names that carry privileges or trust when a client sets them.
pub const PRIVILEGED: [&str; 16] = [
    "role",
    "roles",
    "is_admin",
    "admin",
    "is_staff",
    "staff",
    "superuser",
    "is_superuser",
    "permissions",
    "scopes",
    "groups",
    "owner_id",
    "balance",
    "credit",
    "verified",
    "is_verified",
];

/// Whether a name is one of [`PRIVILEGED`], whatever its case style (`isAdmin`, `is-admin`).
pub fn is_privileged(name: &str) -> bool {
    let joined = words(name).join("_");
    PRIVILEGED.contains(&joined.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn words_of_every_case_style() {
        for n in [
            "imageUrl",
            "image_url",
            "image-url",
            "ImageURL",
            "IMAGE_URL",
        ] {
            assert_eq!(words(n), ["image", "url"], "{n}");
        }
        assert_eq!(words("userID"), ["user", "id"]);
        assert_eq!(words("HTTPServer2Name"), ["http", "server2", "name"]);
    }

    #[test]
    fn url_fields_by_format_and_name() {
        let s = json!({"type": "string"});
        for n in [
            "image_url",
            "avatarUri",
            "callback",
            "webhook",
            "avatar",
            "logo",
            "profile_link",
            "image",
        ] {
            assert!(takes_url(n, &s), "{n}");
        }
        for n in [
            "name",
            "curl_version",
            "urgency",
            "image_count",
            "next_page",
        ] {
            assert!(!takes_url(n, &s), "{n}");
        }
        assert!(takes_url(
            "target",
            &json!({"type": "string", "format": "uri"})
        ));
        assert!(!takes_url("image", &json!({"type": "integer"})));
        assert!(!takes_url(
            "avatar",
            &json!({"type": "string", "format": "binary"})
        ));
    }

    #[test]
    fn privileged_names_in_any_style() {
        for n in [
            "isAdmin", "is_admin", "role", "Roles", "is-staff", "ownerId",
        ] {
            assert!(is_privileged(n), "{n}");
        }
        assert!(!is_privileged("rolex"));
        assert!(!is_privileged("name"));
    }
}
