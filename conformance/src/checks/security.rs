//! Checks of the Credentials and ACLs rules.

use std::sync::Arc;

use broker_api::{AclBinding, ScramCredential, ScramMechanism, StoreError};

use super::util::*;
use super::CheckResult;
use crate::harness::Backend;

fn cred(user: &str, mechanism: ScramMechanism, seed: u8) -> ScramCredential {
    ScramCredential {
        user: user.into(),
        mechanism,
        salt: vec![seed; 16],
        iterations: 4096 + seed as u32,
        stored_key: vec![seed.wrapping_add(1); 32],
        server_key: vec![seed.wrapping_add(2); 32],
    }
}

fn acl(name: &str, principal: &str, operation: i8, permission: i8) -> AclBinding {
    AclBinding {
        resource_type: 2,
        resource_name: name.into(),
        pattern_type: 3,
        principal: principal.into(),
        host: "*".into(),
        operation,
        permission_type: permission,
    }
}

/// **credentials_round_trip**
pub async fn credentials_round_trip(backend: Arc<dyn Backend>) -> CheckResult {
    let mut s = fresh(backend, "credentials_round_trip").await?;
    let sha256 = ScramMechanism::Sha256;
    ensure_eq!(
        s.store.get_credential("alice", sha256).await.ctx("get")?,
        None,
        "credential before any put"
    );
    // Odd but valid user names: commas, '=', non-ASCII, the longest allowed.
    let long = "u".repeat(broker_api::MAX_USER_NAME_BYTES);
    for user in ["alice", "a,b=c", "zoë", long.as_str()] {
        let c = cred(user, sha256, 1);
        s.store.put_credential(c.clone()).await.ctx("put")?;
        ensure_eq!(
            s.store.get_credential(user, sha256).await.ctx("get")?,
            Some(c),
            "credential of {user:?} after put"
        );
    }
    let newer = cred("alice", sha256, 7);
    s.store
        .put_credential(newer.clone())
        .await
        .ctx("put again")?;
    ensure_eq!(
        s.store.get_credential("alice", sha256).await.ctx("get")?,
        Some(newer.clone()),
        "a second put replaces the first"
    );
    ensure_eq!(
        s.store
            .get_credential("alice", ScramMechanism::Sha512)
            .await
            .ctx("get")?,
        None,
        "the other mechanism of the user"
    );
    for bad in [
        String::new(),
        "u".repeat(broker_api::MAX_USER_NAME_BYTES + 1),
    ] {
        ensure_err!(
            s.store.put_credential(cred(&bad, sha256, 1)).await,
            StoreError::InvalidArgument(_),
            "put with a user name of {} bytes",
            bad.len()
        );
    }
    s.reopen().await.ctx("reopen")?;
    ensure_eq!(
        s.store.get_credential("alice", sha256).await.ctx("get")?,
        Some(newer),
        "credential after reopen"
    );
    s.finish().await.ctx("close")
}

/// **credentials_are_listed_and_deleted**
pub async fn credentials_are_listed_and_deleted(backend: Arc<dyn Backend>) -> CheckResult {
    let mut s = fresh(backend, "credentials_are_listed_and_deleted").await?;
    let (a, b) = (ScramMechanism::Sha256, ScramMechanism::Sha512);
    let all = vec![cred("bob", b, 3), cred("alice", b, 2), cred("bob", a, 4)];
    for c in &all {
        s.store.put_credential(c.clone()).await.ctx("put")?;
    }
    let mut sorted = all.clone();
    sorted.sort_by(|x, y| (&x.user, x.mechanism).cmp(&(&y.user, y.mechanism)));
    ensure_eq!(
        s.store.list_credentials().await.ctx("list")?,
        sorted,
        "list_credentials"
    );
    ensure_eq!(
        s.store.delete_credential("bob", a).await.ctx("delete")?,
        true,
        "delete of an existing credential"
    );
    ensure_eq!(
        s.store.delete_credential("bob", a).await.ctx("delete")?,
        false,
        "delete of a deleted credential"
    );
    ensure_eq!(
        s.store.delete_credential("carol", a).await.ctx("delete")?,
        false,
        "delete of an unknown user"
    );
    s.reopen().await.ctx("reopen")?;
    ensure_eq!(
        s.store.list_credentials().await.ctx("list")?,
        vec![cred("alice", b, 2), cred("bob", b, 3)],
        "list after delete and reopen"
    );
    ensure_eq!(
        s.store.get_credential("bob", a).await.ctx("get")?,
        None,
        "deleted credential after reopen"
    );
    s.finish().await.ctx("close")
}

/// **acls_round_trip**
pub async fn acls_round_trip(backend: Arc<dyn Backend>) -> CheckResult {
    let mut s = fresh(backend, "acls_round_trip").await?;
    ensure_eq!(
        s.store.list_acls().await.ctx("list")?,
        vec![],
        "no ACLs at first"
    );
    let mut prefixed = acl("orders-", "User:bob", 3, 3);
    prefixed.pattern_type = 4;
    let mut cluster = acl("kafka-cluster", "User:*", 2, 2);
    cluster.resource_type = 4;
    cluster.host = "10.0.0.1".into();
    let given = vec![
        acl("t", "User:alice", 3, 3),
        prefixed,
        cluster,
        acl("t", "User:alice", 4, 2),
    ];
    s.store.create_acls(&given).await.ctx("create")?;
    // Equal bindings are stored once, in the same call and across calls.
    s.store
        .create_acls(&[given[0].clone(), given[0].clone()])
        .await
        .ctx("create again")?;
    let mut sorted = given.clone();
    sorted.sort();
    ensure_eq!(s.store.list_acls().await.ctx("list")?, sorted, "list_acls");
    s.reopen().await.ctx("reopen")?;
    ensure_eq!(
        s.store.list_acls().await.ctx("list")?,
        sorted,
        "list_acls after reopen"
    );
    s.finish().await.ctx("close")
}

/// **acls_are_deleted_exactly**
pub async fn acls_are_deleted_exactly(backend: Arc<dyn Backend>) -> CheckResult {
    let mut s = fresh(backend, "acls_are_deleted_exactly").await?;
    let keep = acl("t", "User:alice", 3, 3);
    let gone = acl("t", "User:alice", 4, 3);
    let other = acl("u", "User:alice", 4, 3);
    s.store
        .create_acls(&[keep.clone(), gone.clone(), other.clone()])
        .await
        .ctx("create")?;
    let absent = acl("t", "User:nobody", 4, 3);
    ensure_eq!(
        s.store
            .delete_acls(&[gone.clone(), absent, other.clone()])
            .await
            .ctx("delete")?,
        2,
        "bindings removed"
    );
    ensure_eq!(
        s.store.delete_acls(&[gone]).await.ctx("delete again")?,
        0,
        "a second delete of the same binding"
    );
    s.reopen().await.ctx("reopen")?;
    ensure_eq!(
        s.store.list_acls().await.ctx("list")?,
        vec![keep],
        "list after delete and reopen"
    );
    s.finish().await.ctx("close")
}
