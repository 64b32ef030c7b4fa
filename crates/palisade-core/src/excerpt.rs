//! Excerpts of attacker input that are safe to keep and show an operator (the admin API's
//! security events): control characters made visible, credentials and card numbers masked,
//! and short.

/// At most this many characters of input are kept in an event.
pub const EXCERPT_CHARS: usize = 160;

/// An excerpt of attacker input that is safe to keep and show: control characters made
/// visible, long token-like runs (credentials, session ids, keys) and long digit runs (card
/// and account numbers) masked, and cut to [`EXCERPT_CHARS`] characters. The console shows
/// it as text, never as markup.
pub fn redact(input: &str) -> String {
    let input = mask_digit_groups(input);
    let mut out = String::new();
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        let digits = run.chars().filter(char::is_ascii_digit).count();
        if run.len() >= 24 || (digits >= 12 && digits * 10 >= run.len() * 8) {
            out.push_str("[redacted]");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in input.chars() {
        if c == '\u{2022}' {
            out.push_str("[redacted]");
            continue;
        }
        if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+' | '/' | '=' | '.' | '~') {
            run.push(c);
            continue;
        }
        flush(&mut run, &mut out);
        if c.is_control() {
            out.push_str(&c.escape_default().to_string());
        } else {
            out.push(c);
        }
        if out.chars().count() > EXCERPT_CHARS {
            break;
        }
    }
    flush(&mut run, &mut out);
    if out.chars().count() > EXCERPT_CHARS {
        let cut: String = out.chars().take(EXCERPT_CHARS).collect();
        return format!("{cut}…");
    }
    out
}

/// Card and account numbers written in groups (`4111 1111 1111 1111`, `4111-1111-…`): a
/// span of digits, spaces and dashes with 12 digits or more becomes one `\u{2022}`, which
/// [`redact`] writes as `[redacted]`.
fn mask_digit_groups(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    let mut span = String::new();
    let mut digits = 0;
    let end = |span: &mut String, digits: &mut usize, out: &mut String| {
        if *digits >= 12 {
            let kept = span.trim_end_matches([' ', '-']);
            let tail = span.get(kept.len()..).unwrap_or("");
            out.push('\u{2022}');
            out.push_str(tail);
        } else {
            out.push_str(span);
        }
        span.clear();
        *digits = 0;
    };
    for c in input.chars() {
        if c.is_ascii_digit() || (digits > 0 && matches!(c, ' ' | '-')) {
            digits += usize::from(c.is_ascii_digit());
            span.push(c);
        } else {
            end(&mut span, &mut digits, &mut out);
            out.push(c);
        }
    }
    end(&mut span, &mut digits, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_mask_credentials_and_card_numbers_and_stay_short() {
        assert_eq!(redact("1' OR '1'='1"), "1' OR '1'='1");
        let r = redact("token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc and 4111 1111 1111 1111");
        assert!(!r.contains("eyJhbGci"), "{r}");
        assert!(r.ends_with("and [redacted]"), "{r}");
        assert_eq!(redact("call 555-1234 now"), "call 555-1234 now");
        assert_eq!(redact("card 4111111111111111"), "card [redacted]");
        assert_eq!(redact("a\r\nb"), "a\\r\\nb");
        assert!(redact(&"<a>".repeat(200)).chars().count() <= EXCERPT_CHARS + 1);
    }
}
