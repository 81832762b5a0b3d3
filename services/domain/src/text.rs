//! Parse, don't validate: small value types built at the edge, so the core
//! never sees raw input.

use serde::{Deserialize, Serialize};

/// Longest display name we accept: long enough for "株式会社… 受注システム本番環境",
/// short enough to fit a mail subject and a table cell.
pub const NAME_LEN_MAX_CHARS: usize = 200;
/// RFC 5321 limits a forward path to 256 octets including the brackets.
pub const EMAIL_LEN_MAX_BYTES: usize = 254;

/// A trimmed, non-empty display name without control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct Name(String);

impl Name {
    pub fn parse(field: &str, raw: &str) -> Result<Name, String> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(format!("{field} must not be empty"));
        }
        if trimmed.chars().count() > NAME_LEN_MAX_CHARS {
            return Err(format!(
                "{field} must be at most {NAME_LEN_MAX_CHARS} characters"
            ));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(format!("{field} must not contain control characters"));
        }
        Ok(Name(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form under which names are unique: case and surrounding space ignored.
    pub fn unique_key(&self) -> String {
        self.0.to_lowercase()
    }
}

/// An email address of the plain `local@domain` form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Email, String> {
        let s = raw.trim();
        let valid = s.len() <= EMAIL_LEN_MAX_BYTES
            && !s
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
            && matches!(s.split_once('@'), Some((local, domain))
                if !local.is_empty() && domain.contains('.') && !domain.starts_with('.')
                    && !domain.ends_with('.') && !domain.contains('@'));
        if valid {
            Ok(Email(s.to_owned()))
        } else {
            Err(format!("{raw:?} is not an email address"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The languages mails are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Locale {
    Ja,
    En,
}

impl Locale {
    pub fn parse(raw: &str) -> Result<Locale, String> {
        match raw {
            "ja" => Ok(Locale::Ja),
            "en" => Ok(Locale::En),
            other => Err(format!("locale {other:?} is not supported (ja, en)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            Name::parse("name", "  受注サイト ").unwrap().as_str(),
            "受注サイト"
        );
        assert!(Name::parse("name", "   ").is_err());
        assert!(Name::parse("name", "a\u{0}b").is_err());
        assert!(Name::parse("name", &"x".repeat(NAME_LEN_MAX_CHARS + 1)).is_err());
        assert!(Name::parse("name", &"字".repeat(NAME_LEN_MAX_CHARS)).is_ok());
    }

    #[test]
    fn emails_need_a_local_part_and_a_dotted_domain() {
        assert!(Email::parse("ops@example.jp").is_ok());
        for bad in [
            "",
            "a",
            "@example.jp",
            "a@b",
            "a b@example.jp",
            "a@.jp",
            "a@b@c.jp",
            "<a@b.jp>",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad} accepted");
        }
    }
}

/// Whether JSON text holds a NUL character (U+0000), as a `\u0000` escape or
/// a raw byte: the one character PostgreSQL's `text` and `jsonb` cannot hold.
/// Stored in an event (kept as `json`, which takes it), it would fail every
/// read model that copies it into a `text` or `jsonb` column, for ever; so
/// the HTTP edge refuses it in every body and the append path in every
/// payload. An escaped backslash followed by `u0000` (`\\u0000`) is six
/// harmless characters, not a NUL.
pub fn json_holds_nul(json: &[u8]) -> bool {
    // Both searches are SIMD scans, the escape's searcher built once: this
    // runs on every request body and every event appended.
    static ESCAPE: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\\u0000"));
    memchr::memchr(0, json).is_some()
        || ESCAPE.find_iter(json).any(|at| {
            // The backslashes running up to and including this one: an odd
            // run ends in an escape, an even run is escaped backslashes.
            let run = json[..=at]
                .iter()
                .rev()
                .take_while(|&&b| b == b'\\')
                .count();
            run % 2 == 1
        })
}

/// The JSON pointer (RFC 6901) of the first string, or object key, in
/// `value` that holds a NUL: what a refusal names.
pub fn nul_pointer(value: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    fn escape(segment: &str) -> String {
        segment
            .replace('\0', "\\u0000")
            .replace('~', "~0")
            .replace('/', "~1")
    }
    match value {
        Value::String(s) if s.contains('\0') => Some(String::new()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| nul_pointer(v).map(|p| format!("/{i}{p}"))),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            if k.contains('\0') {
                Some(format!("/{}", escape(k)))
            } else {
                nul_pointer(v).map(|p| format!("/{}{p}", escape(k)))
            }
        }),
        _ => None,
    }
}

#[cfg(test)]
mod nul_tests {
    use super::*;

    #[test]
    fn a_nul_escape_or_byte_is_found_and_an_escaped_backslash_is_not() {
        assert!(json_holds_nul(br#"{"a":"x\u0000y"}"#));
        assert!(
            json_holds_nul(br#"{"a":"\\\u0000"}"#),
            "\\\\ then an escape"
        );
        assert!(json_holds_nul(b"{\"a\":\"\0\"}"));
        assert!(
            !json_holds_nul(br#"{"a":"\\u0000"}"#),
            "an escaped backslash"
        );
        assert!(!json_holds_nul(br#"{"a":"\\\\u0000"}"#));
        assert!(!json_holds_nul(br#"{"a":"\u0001 u0000 \n"}"#));
        assert!(!json_holds_nul(b""));
    }

    #[test]
    fn the_pointer_names_the_field_holding_the_nul() {
        let v: serde_json::Value =
            serde_json::from_str(r#"{"a":"ok","b":[{"c/d":"x\u0000"}]}"#).unwrap();
        assert_eq!(nul_pointer(&v).as_deref(), Some("/b/0/c~1d"));
        let v: serde_json::Value = serde_json::from_str(r#"{"labels":{"e\u0000":"v"}}"#).unwrap();
        assert_eq!(nul_pointer(&v).as_deref(), Some("/labels/e\\u0000"));
        assert_eq!(nul_pointer(&serde_json::json!({"a": 1})), None);
    }
}
