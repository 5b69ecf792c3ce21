use std::fmt;

use super::{echo, InvalidValue};

/// An email address: one `@`, a non-empty local part, a dotted domain, no spaces, at most 254
/// bytes (RFC 5321's path limit). Stored lower case, so that one mailbox is one user.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl TryFrom<String> for Email {
    type Error = InvalidValue;

    fn try_from(text: String) -> Result<Email, InvalidValue> {
        let text = text.trim().to_ascii_lowercase();
        if text.is_empty() || text.len() > 254 {
            return Err(InvalidValue::new("must be 1 to 254 characters"));
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(InvalidValue::new("must not contain spaces"));
        }
        let Some((local, domain)) = text.split_once('@') else {
            return Err(InvalidValue::new(format!("`{}` has no @", echo(&text))));
        };
        let domain_ok = !domain.contains('@')
            && domain.contains('.')
            && domain.split('.').all(|label| !label.is_empty());
        if local.is_empty() || !domain_ok {
            return Err(InvalidValue::new(format!(
                "`{}` is not an email address",
                echo(&text)
            )));
        }
        Ok(Email(text))
    }
}

impl Email {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A display name (a user's or a plan's): trimmed, 1 to 200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Name(String);

impl TryFrom<String> for Name {
    type Error = InvalidValue;

    fn try_from(text: String) -> Result<Name, InvalidValue> {
        let text = text.trim();
        let chars = text.chars().count();
        if chars == 0 || chars > 200 {
            return Err(InvalidValue::new("must be 1 to 200 characters"));
        }
        if text.chars().any(char::is_control) {
            return Err(InvalidValue::new("must not contain control characters"));
        }
        Ok(Name(text.to_owned()))
    }
}

impl Name {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_plain_address_is_an_email_and_is_kept_lower_case() {
        let email = Email::try_from("Ada@Example.COM".to_owned()).unwrap();
        assert_eq!(email.as_str(), "ada@example.com");
    }

    #[test]
    fn addresses_without_at_or_dotted_domain_are_refused() {
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@",
            "ada@example",
            "a b@example.com",
            "a@b@c.d",
            "ada@example..com",
        ] {
            assert!(Email::try_from(bad.to_owned()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_are_trimmed_and_never_empty() {
        assert_eq!(Name::try_from("  Ada ".to_owned()).unwrap().as_str(), "Ada");
        assert!(Name::try_from("   ".to_owned()).is_err());
        assert!(Name::try_from("x".repeat(201)).is_err());
    }

    proptest! {
        #[test]
        fn any_accepted_email_has_exactly_one_at_and_no_space(text in "\\PC{0,40}") {
            if let Ok(email) = Email::try_from(text) {
                prop_assert_eq!(email.as_str().matches('@').count(), 1);
                prop_assert!(!email.as_str().contains(' '));
            }
        }
    }
}
