//! The authoriser: Kafka's ACL semantics over the bindings in the store (cached in memory,
//! refreshed after every change and periodically, for brokers sharing a database).
//!
//! A request is allowed when the principal is a super user, or no DENY binding matches and
//! an ALLOW binding matches (an ALLOW of READ, WRITE, DELETE or ALTER implies DESCRIBE; of
//! ALTER_CONFIGS implies DESCRIBE_CONFIGS; ALL implies everything), or no binding names the
//! resource at all and `allow.everyone.if.no.acl.found` is on. DENY wins.

use std::sync::Arc;
use std::time::Duration;

use broker_api::{AclBinding, Store, StoreResult};
use parking_lot::RwLock;
use tracing::warn;

/// Kafka's resource types (codes of the ACL APIs).
pub mod resource {
    pub const ANY: i8 = 1;
    pub const TOPIC: i8 = 2;
    pub const GROUP: i8 = 3;
    pub const CLUSTER: i8 = 4;
    pub const TRANSACTIONAL_ID: i8 = 5;
}

/// Kafka's pattern types.
pub mod pattern {
    pub const ANY: i8 = 1;
    pub const MATCH: i8 = 2;
    pub const LITERAL: i8 = 3;
    pub const PREFIXED: i8 = 4;
}

/// Kafka's ACL operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub enum Op {
    Any = 1,
    All = 2,
    Read = 3,
    Write = 4,
    Create = 5,
    Delete = 6,
    Alter = 7,
    Describe = 8,
    ClusterAction = 9,
    DescribeConfigs = 10,
    AlterConfigs = 11,
    IdempotentWrite = 12,
}

/// Kafka's permission types.
pub mod permission {
    pub const ANY: i8 = 1;
    pub const DENY: i8 = 2;
    pub const ALLOW: i8 = 3;
}

/// The one cluster resource's name.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// Every principal (`User:*`) and every host (`*`); also the literal name matching all.
pub const WILDCARD: &str = "*";

/// How the authoriser is set up.
#[derive(Debug, Clone, Default)]
pub struct AuthzSettings {
    /// Off: everything is allowed and the ACL APIs answer SECURITY_DISABLED (the behaviour
    /// without any security settings).
    pub enabled: bool,
    pub super_users: Vec<String>,
    pub allow_if_no_acl: bool,
}

/// The authoriser shared by the Kafka and SQS listeners.
pub struct Authorizer {
    settings: AuthzSettings,
    store: Arc<dyn Store>,
    acls: RwLock<Arc<Vec<AclBinding>>>,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Whether `binding` (a stored ACL) names the resource (type, name).
fn names_resource(b: &AclBinding, rtype: i8, name: &str) -> bool {
    b.resource_type == rtype
        && match b.pattern_type {
            pattern::LITERAL => b.resource_name == name || b.resource_name == WILDCARD,
            pattern::PREFIXED => name.starts_with(b.resource_name.as_str()),
            _ => false,
        }
}

/// The operations an ALLOW of `granted` permits.
fn implies(granted: i8, wanted: Op) -> bool {
    let g = granted;
    g == Op::All as i8
        || g == wanted as i8
        || (wanted == Op::Describe
            && [Op::Read, Op::Write, Op::Delete, Op::Alter]
                .iter()
                .any(|o| *o as i8 == g))
        || (wanted == Op::DescribeConfigs && g == Op::AlterConfigs as i8)
}

impl Authorizer {
    /// An authoriser over `store`'s bindings; call [`Authorizer::refresh`] before use.
    pub fn new(settings: AuthzSettings, store: Arc<dyn Store>) -> Arc<Authorizer> {
        Arc::new(Authorizer {
            settings,
            store,
            acls: RwLock::new(Arc::new(Vec::new())),
        })
    }

    /// An authoriser that allows everything (no security settings).
    pub fn disabled(store: Arc<dyn Store>) -> Arc<Authorizer> {
        Self::new(AuthzSettings::default(), store)
    }

    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    /// Whether `principal` is one of the super users.
    pub fn is_super_user(&self, principal: &str) -> bool {
        self.settings.super_users.iter().any(|s| s == principal)
    }

    /// Reads the bindings from the store again.
    pub async fn refresh(&self) -> StoreResult<()> {
        if !self.settings.enabled {
            return Ok(());
        }
        let list = self.store.list_acls().await?;
        *self.acls.write() = Arc::new(list);
        Ok(())
    }

    /// Refreshes every `every` until `stop` (other brokers on a shared database may change
    /// the bindings).
    pub async fn refresh_loop(
        self: Arc<Self>,
        every: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        if !self.settings.enabled {
            return;
        }
        loop {
            tokio::select! {
                _ = crate::kafka::stopped(&mut stop) => return,
                _ = tokio::time::sleep(every) => {
                    if let Err(e) = self.refresh().await {
                        warn!("reading the ACLs failed, keeping the previous ones: {e}");
                    }
                }
            }
        }
    }

    /// The bindings in force.
    pub fn bindings(&self) -> Arc<Vec<AclBinding>> {
        self.acls.read().clone()
    }

    /// Whether `principal` at `host` may do `op` on the resource (type, name).
    pub fn allowed(&self, principal: &str, host: &str, op: Op, rtype: i8, name: &str) -> bool {
        if !self.settings.enabled || self.settings.super_users.iter().any(|s| s == principal) {
            return true;
        }
        let acls = self.acls.read().clone();
        let mut named = false;
        let mut allow = false;
        for b in acls.iter().filter(|b| names_resource(b, rtype, name)) {
            named = true;
            let who = b.principal == principal || b.principal == "User:*";
            let from = b.host == WILDCARD || b.host == host;
            if !who || !from {
                continue;
            }
            if b.permission_type == permission::DENY
                && (b.operation == Op::All as i8 || b.operation == op as i8)
            {
                return false;
            }
            if b.permission_type == permission::ALLOW && implies(b.operation, op) {
                allow = true;
            }
        }
        allow || (!named && self.settings.allow_if_no_acl)
    }

    /// Whether the principal holds an ALLOW of `op` on some resource of `rtype` (Kafka's
    /// idempotent producers: WRITE on any topic).
    pub fn allowed_on_any(&self, principal: &str, host: &str, op: Op, rtype: i8) -> bool {
        if !self.settings.enabled
            || self.settings.super_users.iter().any(|s| s == principal)
            || self.settings.allow_if_no_acl
        {
            return true;
        }
        let acls = self.acls.read().clone();
        acls.iter().any(|b| {
            b.resource_type == rtype
                && b.permission_type == permission::ALLOW
                && (b.principal == principal || b.principal == "User:*")
                && (b.host == WILDCARD || b.host == host)
                && implies(b.operation, op)
        }) && !acls.iter().any(|b| {
            b.resource_type == rtype
                && b.resource_name == WILDCARD
                && b.pattern_type == pattern::LITERAL
                && b.permission_type == permission::DENY
                && (b.principal == principal || b.principal == "User:*")
                && (b.operation == Op::All as i8 || b.operation == op as i8)
        })
    }

    /// Stores bindings and refreshes the cache.
    pub async fn create(&self, acls: &[AclBinding]) -> StoreResult<()> {
        self.store.create_acls(acls).await?;
        self.refresh().await
    }

    /// Removes bindings and refreshes the cache; how many were removed.
    pub async fn delete(&self, acls: &[AclBinding]) -> StoreResult<u64> {
        let n = self.store.delete_acls(acls).await?;
        self.refresh().await?;
        Ok(n)
    }
}

/// A filter of DescribeAcls and DeleteAcls.
#[derive(Debug, Clone)]
pub struct AclFilter {
    pub resource_type: i8,
    pub resource_name: Option<String>,
    pub pattern_type: i8,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: i8,
    pub permission_type: i8,
}

impl AclFilter {
    /// Whether the filter selects `b` (Kafka's AclBindingFilter semantics, MATCH included).
    pub fn matches(&self, b: &AclBinding) -> bool {
        let rtype = self.resource_type == resource::ANY || self.resource_type == b.resource_type;
        let name_and_pattern = match (self.pattern_type, &self.resource_name) {
            (pattern::ANY, None) => true,
            (pattern::ANY, Some(n)) => &b.resource_name == n,
            (pattern::MATCH, None) => true,
            (pattern::MATCH, Some(n)) => match b.pattern_type {
                pattern::LITERAL => &b.resource_name == n || b.resource_name == WILDCARD,
                pattern::PREFIXED => n.starts_with(b.resource_name.as_str()),
                _ => false,
            },
            (p, None) => b.pattern_type == p,
            (p, Some(n)) => b.pattern_type == p && &b.resource_name == n,
        };
        let principal = self.principal.as_ref().is_none_or(|p| p == &b.principal);
        let host = self.host.as_ref().is_none_or(|h| h == &b.host);
        let op = self.operation == Op::Any as i8 || self.operation == b.operation;
        let perm =
            self.permission_type == permission::ANY || self.permission_type == b.permission_type;
        rtype && name_and_pattern && principal && host && op && perm
    }

    /// Checks the filter's codes; the error is Kafka's text.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=5).contains(&self.resource_type) {
            return Err(format!("Unknown resource type {}", self.resource_type));
        }
        if !(1..=4).contains(&self.pattern_type) {
            return Err(format!("Unknown pattern type {}", self.pattern_type));
        }
        if !(1..=12).contains(&self.operation) {
            return Err(format!("Unknown operation {}", self.operation));
        }
        if !(1..=3).contains(&self.permission_type) {
            return Err(format!("Unknown permission type {}", self.permission_type));
        }
        Ok(())
    }
}

/// Checks a binding of CreateAcls; the error is Kafka's text (INVALID_REQUEST).
pub fn validate_binding(b: &AclBinding) -> Result<(), String> {
    if !(2..=5).contains(&b.resource_type) {
        return Err(format!(
            "Invalid resource type {} (use topic, group, cluster or transactional id)",
            b.resource_type
        ));
    }
    if b.pattern_type != pattern::LITERAL && b.pattern_type != pattern::PREFIXED {
        return Err("Invalid resource pattern type: use LITERAL or PREFIXED".into());
    }
    if b.resource_name.is_empty() {
        return Err("The resource name must not be empty".into());
    }
    if b.resource_type == resource::CLUSTER && b.resource_name != CLUSTER_NAME {
        return Err(format!(
            "The only valid name for the CLUSTER resource is {CLUSTER_NAME}"
        ));
    }
    if !(2..=12).contains(&b.operation) {
        return Err(format!("Invalid operation {}", b.operation));
    }
    if b.permission_type != permission::ALLOW && b.permission_type != permission::DENY {
        return Err("Invalid permission type: use ALLOW or DENY".into());
    }
    match b.principal.split_once(':') {
        Some(("User", n)) if !n.is_empty() => {}
        _ => {
            return Err(format!(
                "Invalid principal {:?}: write User:NAME or User:*",
                b.principal
            ))
        }
    }
    if b.host.is_empty() {
        return Err("The host must not be empty (use * for every host)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(name: &str, pat: i8, principal: &str, op: Op, perm: i8) -> AclBinding {
        AclBinding {
            resource_type: resource::TOPIC,
            resource_name: name.into(),
            pattern_type: pat,
            principal: principal.into(),
            host: "*".into(),
            operation: op as i8,
            permission_type: perm,
        }
    }

    async fn authz(allow_if_no_acl: bool, acls: Vec<AclBinding>) -> Arc<Authorizer> {
        let store: Arc<dyn Store> = Arc::new(store_memory::MemoryStore::new(Arc::new(
            broker_api::SystemClock,
        )));
        let a = Authorizer::new(
            AuthzSettings {
                enabled: true,
                super_users: vec!["User:admin".into()],
                allow_if_no_acl,
            },
            store,
        );
        a.create(&acls).await.unwrap();
        a
    }

    #[tokio::test]
    async fn kafka_semantics() {
        use permission::{ALLOW, DENY};
        let a = authz(
            false,
            vec![
                binding("orders", pattern::LITERAL, "User:alice", Op::Read, ALLOW),
                binding("logs-", pattern::PREFIXED, "User:bob", Op::Write, ALLOW),
                binding("logs-secret", pattern::LITERAL, "User:bob", Op::All, DENY),
                binding("*", pattern::LITERAL, "User:*", Op::Describe, ALLOW),
            ],
        )
        .await;
        let t = resource::TOPIC;
        assert!(a.allowed("User:alice", "1.2.3.4", Op::Read, t, "orders"));
        assert!(a.allowed("User:alice", "1.2.3.4", Op::Describe, t, "orders"));
        assert!(!a.allowed("User:alice", "1.2.3.4", Op::Write, t, "orders"));
        assert!(a.allowed("User:bob", "h", Op::Write, t, "logs-app"));
        assert!(
            !a.allowed("User:bob", "h", Op::Write, t, "logs-secret"),
            "deny wins"
        );
        assert!(
            !a.allowed("User:bob", "h", Op::Describe, t, "logs-secret"),
            "deny wins"
        );
        assert!(!a.allowed("User:bob", "h", Op::Read, t, "logs-app"));
        assert!(
            a.allowed("User:carol", "h", Op::Describe, t, "anything"),
            "wildcard"
        );
        assert!(!a.allowed("User:carol", "h", Op::Read, t, "anything"));
        assert!(
            a.allowed("User:admin", "h", Op::Delete, t, "orders"),
            "super user"
        );
        assert!(
            !a.allowed("User:carol", "h", Op::Read, resource::GROUP, "g"),
            "no ACL: off"
        );
        let open = authz(
            true,
            vec![binding(
                "orders",
                pattern::LITERAL,
                "User:alice",
                Op::Read,
                ALLOW,
            )],
        )
        .await;
        assert!(open.allowed("User:carol", "h", Op::Read, resource::GROUP, "g"));
        assert!(
            !open.allowed("User:carol", "h", Op::Read, t, "orders"),
            "named resource"
        );
    }

    #[test]
    fn filters_match_as_kafka_does() {
        use permission::ALLOW;
        let lit = binding("orders", pattern::LITERAL, "User:a", Op::Read, ALLOW);
        let pre = binding("ord", pattern::PREFIXED, "User:a", Op::Read, ALLOW);
        let star = binding("*", pattern::LITERAL, "User:a", Op::Read, ALLOW);
        let f = |pat: i8, name: Option<&str>| AclFilter {
            resource_type: resource::ANY,
            resource_name: name.map(str::to_string),
            pattern_type: pat,
            principal: None,
            host: None,
            operation: Op::Any as i8,
            permission_type: permission::ANY,
        };
        let sel = |flt: AclFilter| {
            [&lit, &pre, &star]
                .iter()
                .map(|b| flt.matches(b))
                .collect::<Vec<_>>()
        };
        assert_eq!(sel(f(pattern::ANY, None)), [true, true, true]);
        assert_eq!(sel(f(pattern::MATCH, Some("orders"))), [true, true, true]);
        assert_eq!(
            sel(f(pattern::LITERAL, Some("orders"))),
            [true, false, false]
        );
        assert_eq!(sel(f(pattern::PREFIXED, None)), [false, true, false]);
        assert_eq!(sel(f(pattern::ANY, Some("ord"))), [false, true, false]);
    }
}
