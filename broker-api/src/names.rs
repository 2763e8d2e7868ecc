//! Validation of the names the contract accepts.

use crate::{StoreError, StoreResult};

/// Longest topic name the contract accepts.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Ok when `name` is 1-249 characters of `[A-Za-z0-9._-]` and not `.` or `..`;
/// otherwise `InvalidArgument`. Every store must apply exactly this rule to topic names.
pub fn validate_topic_name(name: &str) -> StoreResult<()> {
    if name.is_empty() || name.len() > MAX_TOPIC_NAME_LEN {
        return Err(StoreError::InvalidArgument(format!(
            "topic name must be 1-{MAX_TOPIC_NAME_LEN} characters, got {}",
            name.len()
        )));
    }
    if name == "." || name == ".." {
        return Err(StoreError::InvalidArgument(format!(
            "topic name may not be {name:?}"
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(StoreError::InvalidArgument(format!(
            "topic name {name:?} has the character {c:?}; only [A-Za-z0-9._-] are allowed"
        )));
    }
    Ok(())
}

/// Ok when `name` is a usable group name: 1-255 bytes with no control characters.
/// Every store must apply this rule to consumer-group and lease-group names.
pub fn validate_group_name(name: &str) -> StoreResult<()> {
    if name.is_empty() || name.len() > 255 || name.chars().any(|c| c.is_control()) {
        return Err(StoreError::InvalidArgument(format!(
            "group name must be 1-255 bytes without control characters: {name:?}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("orders").is_ok());
        assert!(validate_topic_name("a.b_c-D9").is_ok());
        assert!(validate_topic_name(&"x".repeat(249)).is_ok());
        for bad in ["", ".", "..", "a b", "a/b", "é", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
