//! Validated names: a value of these types is always fit to be stored and routed.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Longest key, in bytes of UTF-8; the contract's limit.
pub const MAX_KEY_BYTES: usize = 1024;
/// Longest storage-unit or scope name. Names are joined with `#` into DynamoDB keys, so the
/// alphabet excludes it.
pub const MAX_NAME_LEN: usize = 64;

fn check_name(kind: &'static str, value: &str) -> Result<(), Error> {
    let fits_alphabet = value.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if value.is_empty() || value.len() > MAX_NAME_LEN || !fits_alphabet {
        return Err(Error::BadRequest(format!(
            "{kind} must be 1 to {MAX_NAME_LEN} characters of letters, digits, '.', '_' or '-'"
        )));
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: impl Into<String>) -> Result<Self, Error> {
                let value = value.into();
                check_name($kind, &value)?;
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(value: String) -> Result<Self, Error> {
                Self::parse(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(
    /// The name of a storage unit.
    StorageUnit,
    "a storage unit name"
);
name_type!(
    /// The name of a scope, one self-contained JSON part of a document.
    Scope,
    "a scope name"
);

/// A document key: 1 to 1,024 bytes of UTF-8 without control characters. Any other character,
/// `/`, `?`, `#`, `,`, `+` and spaces among them, is part of the key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Key(String);

impl Key {
    pub fn parse(value: impl Into<String>) -> Result<Self, Error> {
        let value = value.into();
        if value.is_empty() || value.len() > MAX_KEY_BYTES {
            return Err(Error::BadRequest(format!("a key must be 1 to {MAX_KEY_BYTES} bytes of UTF-8")));
        }
        if value.chars().any(char::is_control) {
            return Err(Error::BadRequest("a key may not contain control characters".into()));
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Key {
    type Error = Error;
    fn try_from(value: String) -> Result<Self, Error> {
        Self::parse(value)
    }
}

impl From<Key> for String {
    fn from(value: Key) -> String {
        value.0
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One queue item's identity: a key's scope in a storage unit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemRef {
    pub storage_unit: StorageUnit,
    pub scope: Scope,
    pub key: Key,
}

impl ItemRef {
    pub fn new(storage_unit: StorageUnit, scope: Scope, key: Key) -> Self {
        Self { storage_unit, scope, key }
    }
}

impl fmt::Display for ItemRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.storage_unit, self.scope, self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_refuse_separators_and_empty_values() {
        assert!(StorageUnit::parse("demo-unit_1.a").is_ok());
        for bad in ["", "a#b", "a/b", "a b", "é", &"x".repeat(MAX_NAME_LEN + 1)] {
            assert!(matches!(StorageUnit::parse(bad), Err(Error::BadRequest(_))), "{bad:?} was accepted");
            assert!(matches!(Scope::parse(bad), Err(Error::BadRequest(_))), "{bad:?} was accepted");
        }
    }

    #[test]
    fn keys_accept_any_printable_utf8_up_to_the_limit() {
        for good in ["a/b", "with space", "a+b", "k,1", "q?#", "ключ/ü", &"k".repeat(MAX_KEY_BYTES)] {
            assert_eq!(Key::parse(good).unwrap().as_str(), good);
        }
        for bad in ["", "tab\there", "nl\n", &"k".repeat(MAX_KEY_BYTES + 1), &"é".repeat(513)] {
            assert!(matches!(Key::parse(bad), Err(Error::BadRequest(_))), "{bad:?} was accepted");
        }
    }
}
