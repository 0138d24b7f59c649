//! Input rules for account data: email addresses, passwords (length, not composition, by
//! default), names. Each returns the value to store or an `Invalid` for a 422.

use crate::config::PasswordPolicy;
use crate::store::UserPatch;

/// Why an input was refused and where, in the origin's (FastAPI's) terms: `loc` is the
/// path to the field (`["body", "email"]`), `msg` a sentence, `kind` its `type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub loc: Vec<String>,
    pub msg: String,
    pub kind: &'static str,
}

impl Invalid {
    /// A body field whose value is refused.
    pub(crate) fn body(field: &str, msg: impl Into<String>) -> Invalid {
        Invalid {
            loc: vec!["body".into(), field.into()],
            msg: msg.into(),
            kind: "value_error",
        }
    }

    /// A query parameter whose value is refused.
    pub(crate) fn query(field: &str, msg: impl Into<String>) -> Invalid {
        Invalid {
            loc: vec!["query".into(), field.into()],
            ..Invalid::body(field, msg)
        }
    }

    /// The same refusal, for a field of another name (`password` -> `new_password`).
    pub(crate) fn at(mut self, field: &str) -> Invalid {
        if let Some(last) = self.loc.last_mut() {
            *last = field.to_owned();
        }
        self
    }

    /// With another `type`.
    pub(crate) fn kind(self, kind: &'static str) -> Invalid {
        Invalid { kind, ..self }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Invalid {}

impl From<Invalid> for String {
    fn from(i: Invalid) -> String {
        i.msg
    }
}

/// The one spelling of an address that is stored, compared and injected: NFKC-normalized
/// and case-folded (lower case), then NFKC again (lower-casing can leave a string that is
/// not NFKC), and an internationalized domain in its one Unicode form
/// (`canonical_domain`). `ｕ1@Example.test` and `u1@example.test` are one address, and so
/// are `a@пример.test` and `a@xn--e1afmkfd.test`.
pub(crate) fn normalize_email(raw: &str) -> String {
    normalized(raw).0
}

/// `normalize_email`, and whether the domain is a valid internationalized name (always,
/// for an ASCII domain without `xn--`; `email` checks the rest of its syntax).
fn normalized(raw: &str) -> (String, bool) {
    use std::borrow::Cow;
    use unicode_normalization::UnicodeNormalization as _;
    let folded: String = raw.trim().nfkc().collect::<String>().to_lowercase();
    let folded: String = folded.nfkc().collect();
    let Some((local, domain)) = folded.rsplit_once('@') else {
        return (folded, true);
    };
    match canonical_domain(domain) {
        Some(Cow::Owned(domain)) => (format!("{local}@{domain}"), true),
        Some(Cow::Borrowed(_)) => (folded, true),
        None => (folded, false),
    }
}

/// An internationalized domain name in one form, the way mail software resolves it: its
/// labels mapped by UTS #46 (IDNA), checked as a DNS name, and any Punycode (`xn--`)
/// label decoded. A domain that is ASCII without an `xn--` label is returned unchanged
/// (borrowed). None: not a valid internationalized name, such as a malformed `xn--` label
/// or one that decodes to a character IDNA disallows.
fn canonical_domain(domain: &str) -> Option<std::borrow::Cow<'_, str>> {
    use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};
    if domain.is_ascii() && !domain.split('.').any(|label| label.starts_with("xn--")) {
        return Some(std::borrow::Cow::Borrowed(domain));
    }
    let uts46 = Uts46::new();
    let ascii = uts46
        .to_ascii(
            domain.as_bytes(),
            AsciiDenyList::STD3,
            Hyphens::CheckFirstLast,
            DnsLength::Verify,
        )
        .ok()?;
    let (unicode, checked) = uts46.to_unicode(
        ascii.as_bytes(),
        AsciiDenyList::STD3,
        Hyphens::CheckFirstLast,
    );
    checked.ok()?;
    Some(std::borrow::Cow::Owned(unicode.into_owned()))
}

/// A syntactically valid address, in its normalized form (`normalize_email`).
pub(crate) fn email(raw: &str) -> Result<String, Invalid> {
    let bad = || Invalid::body("email", "Invalid email address");
    let (address, idn_ok) = normalized(raw);
    let text = address.as_str();
    if text.len() > 254 || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let (local, domain) = text.rsplit_once('@').ok_or_else(bad)?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = idn_ok
        && domain.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| !tld.chars().all(|c| c.is_ascii_digit()));
    if !local_ok || !domain_ok {
        return Err(bad());
    }
    Ok(address)
}

/// The common-password list, parsed once.
fn common_passwords() -> &'static std::collections::HashSet<&'static str> {
    static LIST: std::sync::OnceLock<std::collections::HashSet<&'static str>> =
        std::sync::OnceLock::new();
    LIST.get_or_init(|| {
        include_str!("common_passwords.txt")
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect()
    })
}

/// A new password for the account with `email`: within the policy's length, no control
/// characters, not on the common-password list (compared ignoring case), and not containing
/// the email's local part when that is three characters or more. The message says which
/// rule, never the password.
pub(crate) fn password(policy: &PasswordPolicy, pw: &str, email: &str) -> Result<(), Invalid> {
    let n = pw.chars().count();
    if n < policy.min_length || n > policy.max_length {
        return Err(Invalid::body(
            "password",
            format!(
                "Password must be between {} and {} characters",
                policy.min_length, policy.max_length
            ),
        ));
    }
    if pw.chars().any(|c| c.is_control() && c != '\t') {
        return Err(Invalid::body(
            "password",
            "Password must not contain control characters",
        ));
    }
    let lower = pw.to_lowercase();
    if common_passwords().contains(lower.as_str()) {
        return Err(Invalid::body(
            "password",
            "Password is too common: it is on a list of frequently used passwords",
        ));
    }
    let local = email.split('@').next().unwrap_or_default().to_lowercase();
    if local.chars().count() >= 3 && lower.contains(&local) {
        return Err(Invalid::body(
            "password",
            "Password must not contain the part of your email address before the @",
        ));
    }
    if policy.require_mixed
        && !(pw.chars().any(char::is_uppercase)
            && pw.chars().any(char::is_lowercase)
            && pw.chars().any(|c| c.is_ascii_digit()))
    {
        return Err(Invalid::body(
            "password",
            "Password must contain an uppercase letter, a lowercase letter and a digit",
        ));
    }
    Ok(())
}

/// A required single-line text field of at most `max` characters, trimmed.
pub(crate) fn text(field: &str, value: &str, max: usize) -> Result<String, Invalid> {
    let v = value.trim();
    if v.is_empty() {
        return Err(Invalid::body(field, format!("{field} must not be empty")));
    }
    if v.chars().count() > max {
        return Err(Invalid::body(
            field,
            format!("{field} must be at most {max} characters"),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(Invalid::body(
            field,
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(v.to_string())
}

/// An optional text field; empty means absent.
pub(crate) fn optional_text(
    field: &str,
    value: Option<&str>,
    max: usize,
) -> Result<Option<String>, Invalid> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => text(field, v, max).map(Some),
    }
}

/// A patch of the profile fields (`full_name`, `organization`); an empty organization
/// clears it.
pub(crate) fn profile_patch(
    full_name: Option<&str>,
    organization: Option<&str>,
) -> Result<UserPatch, Invalid> {
    Ok(UserPatch {
        full_name: full_name.map(|n| text("full_name", n, 100)).transpose()?,
        organization: organization
            .map(|o| optional_text("organization", Some(o), 100))
            .transpose()?,
        ..UserPatch::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(
            email(" Alice.Smith+x@Example.COM ").unwrap(),
            "alice.smith+x@example.com"
        );
        assert!(email("josé@exämple.de").is_ok());
        // Compatibility forms and case fold to one address.
        assert_eq!(email("ｕ1@example.test").unwrap(), "u1@example.test");
        assert_eq!(email("Ｕ1@ＥＸＡＭＰＬＥ.test").unwrap(), "u1@example.test");
        assert_eq!(
            email("ÅSA@example.test").unwrap(),
            email("åsa@example.test").unwrap()
        );
        // A + combining ring (decomposed) is the same address as the precomposed Å.
        assert_eq!(
            email("A\u{30a}sa@example.test").unwrap(),
            email("Åsa@example.test").unwrap()
        );
        // An internationalized domain has one form, whether written in Unicode (any case,
        // any label separator IDNA knows) or in Punycode; a login looks it up the same way.
        for twin in [
            "a@xn--e1afmkfd.test",
            "a@XN--E1AFMKFD.test",
            "a@ПРИМЕР.test",
            "a@пример\u{3002}test",
        ] {
            assert_eq!(email(twin).unwrap(), "a@пример.test", "{twin}");
            assert_eq!(normalize_email(twin), "a@пример.test", "{twin}");
        }
        // A plain ASCII domain is not touched: `--` inside a label stays valid.
        assert_eq!(email("a@ab--cd.test").unwrap(), "a@ab--cd.test");
        for bad in [
            "",
            "plain",
            "@x.io",
            "a@",
            "a@b",
            "a@.io",
            "a@b..io",
            "a b@x.io",
            ".a@x.io",
            "a.@x.io",
            "a..b@x.io",
            "a@-x.io",
            "a@x-.io",
            "a@x.123",
            "a@b@c.io",
            "a\n@x.io",
            // Punycode that does not decode to a valid internationalized name.
            "a@xn--a.io",
            "a@xn--.io",
            "a@xn---abc.io",
        ] {
            assert!(email(bad).is_err(), "{bad:?}");
        }
        assert!(email(&format!("{}@x.io", "a".repeat(65))).is_err());
    }

    #[test]
    fn common_passwords_and_the_email_name_are_refused() {
        let p = PasswordPolicy {
            min_length: 8,
            max_length: 128,
            require_mixed: false,
        };
        assert!(common_passwords().len() >= 10_000);
        for common in [
            "password",
            "Password",
            "PASSWORD1",
            "12345678",
            "iloveyou",
            "sunshine",
        ] {
            let err = password(&p, common, "ada@example.com").unwrap_err();
            // A fixed sentence: the password itself is never echoed.
            assert_eq!(
                err.msg, "Password is too common: it is on a list of frequently used passwords",
                "{common}"
            );
        }
        let err = password(&p, "my-AdaLovelace-1815", "adalovelace@example.com").unwrap_err();
        assert!(err.msg.contains("email"), "{}", err.msg);
        // A short local part is not a rule (it would refuse half of all passwords).
        assert!(password(&p, "abundant harvest", "ab@example.com").is_ok());
    }

    #[test]
    fn passwords_by_length_by_default() {
        let p = PasswordPolicy {
            min_length: 8,
            max_length: 128,
            require_mixed: false,
        };
        assert!(password(&p, "correct horse battery staple", "ada@example.com").is_ok());
        assert!(
            password(&p, "ünïcødé✓", "ada@example.com").is_ok(),
            "8 unicode characters"
        );
        assert!(password(&p, "short", "ada@example.com").is_err());
        assert!(password(&p, &"x".repeat(129), "ada@example.com").is_err());
        assert!(password(&p, "abc\u{0}defgh", "ada@example.com").is_err());
        let mixed = PasswordPolicy {
            require_mixed: true,
            ..p
        };
        assert!(password(&mixed, "alllowercase1", "ada@example.com").is_err());
        assert!(password(&mixed, "Mixed1case", "ada@example.com").is_ok());
    }

    #[test]
    fn text_fields() {
        assert_eq!(text("full_name", "  Ada  ", 100).unwrap(), "Ada");
        assert!(text("full_name", "   ", 100).is_err());
        assert!(text("full_name", &"x".repeat(101), 100).is_err());
        let e = text("organization", "a\u{7}b", 100).unwrap_err();
        assert_eq!(e.loc, ["body", "organization"]);
        assert_eq!(e.at("org").loc, ["body", "org"]);
        assert_eq!(optional_text("organization", Some(""), 100).unwrap(), None);
    }
}
