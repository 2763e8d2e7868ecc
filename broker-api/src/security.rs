//! What the stores keep for the broker's security: salted SCRAM credentials (never a
//! password) and ACL bindings with Kafka's codes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A SCRAM mechanism (RFC 5802 with SHA-256 or SHA-512, RFC 7677).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ScramMechanism {
    #[serde(rename = "SCRAM-SHA-256")]
    Sha256,
    #[serde(rename = "SCRAM-SHA-512")]
    Sha512,
}

impl ScramMechanism {
    /// Both mechanisms.
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];

    /// The SASL name, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// Kafka's code of the mechanism (DescribeUserScramCredentials): 1 and 2.
    pub fn code(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    /// The mechanism of a Kafka code.
    pub fn from_code(code: i8) -> Option<ScramMechanism> {
        match code {
            1 => Some(ScramMechanism::Sha256),
            2 => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }
}

impl fmt::Display for ScramMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ScramMechanism {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "SCRAM-SHA-256" => Ok(ScramMechanism::Sha256),
            "SCRAM-SHA-512" => Ok(ScramMechanism::Sha512),
            _ => Err(format!(
                "unknown SCRAM mechanism {s:?}: use SCRAM-SHA-256 or SCRAM-SHA-512"
            )),
        }
    }
}

/// A user's salted SCRAM credential for one mechanism: what the server needs to check a
/// login (RFC 5802's StoredKey and ServerKey), never the password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    /// The user name (the principal is `User:<user>`); 1-1024 bytes, no NUL.
    pub user: String,
    pub mechanism: ScramMechanism,
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl fmt::Debug for ScramCredential {
    /// Names the user and mechanism only: the keys stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCredential")
            .field("user", &self.user)
            .field("mechanism", &self.mechanism)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// Longest user name a store must keep.
pub const MAX_USER_NAME_BYTES: usize = 1024;

/// Checks a user name: 1 to [`MAX_USER_NAME_BYTES`] bytes, no NUL.
pub fn validate_user_name(user: &str) -> crate::StoreResult<()> {
    if user.is_empty() || user.len() > MAX_USER_NAME_BYTES || user.contains('\0') {
        return Err(crate::StoreError::InvalidArgument(format!(
            "a user name must be 1-{MAX_USER_NAME_BYTES} bytes without NUL, got {} bytes",
            user.len()
        )));
    }
    Ok(())
}

/// One ACL: who (principal, host) may or may not (permission) do what (operation) on which
/// resources (type, name, pattern). Every code is Kafka's (CreateAcls); the store keeps them
/// verbatim and orders them by field order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    /// 2 topic, 3 group, 4 cluster, 5 transactional id.
    pub resource_type: i8,
    /// The name, a prefix (prefixed pattern), or `*` (every resource of the type).
    pub resource_name: String,
    /// 3 literal, 4 prefixed.
    pub pattern_type: i8,
    /// `User:NAME` or `User:*`.
    pub principal: String,
    /// A client IP address or `*`.
    pub host: String,
    /// Kafka's operation code (2 all, 3 read, 4 write, ...).
    pub operation: i8,
    /// 2 deny, 3 allow.
    pub permission_type: i8,
}
