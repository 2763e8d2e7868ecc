//! SCRAM credentials and ACL bindings in the `scram_credentials` and `acls` tables.

use broker_api::{
    validate_user_name, AclBinding, ScramCredential, ScramMechanism, StoreError, StoreResult,
};

use crate::error::db_err;
use crate::PgStore;

fn credential(row: &tokio_postgres::Row) -> StoreResult<ScramCredential> {
    let mechanism: String = row.get(1);
    let iterations: i32 = row.get(3);
    Ok(ScramCredential {
        user: row.get(0),
        mechanism: mechanism
            .parse()
            .map_err(|e: String| StoreError::Corrupt(e))?,
        salt: row.get(2),
        iterations: iterations as u32,
        stored_key: row.get(4),
        server_key: row.get(5),
    })
}

const CREDENTIAL_COLUMNS: &str = "username, mechanism, salt, iterations, stored_key, server_key";

fn acl(row: &tokio_postgres::Row) -> AclBinding {
    let code = |i: usize| row.get::<_, i16>(i) as i8;
    AclBinding {
        resource_type: code(0),
        resource_name: row.get(1),
        pattern_type: code(2),
        principal: row.get(3),
        host: row.get(4),
        operation: code(5),
        permission_type: code(6),
    }
}

fn acl_params(a: &AclBinding) -> [i16; 4] {
    [
        a.resource_type as i16,
        a.pattern_type as i16,
        a.operation as i16,
        a.permission_type as i16,
    ]
}

impl PgStore {
    pub(crate) async fn do_put_credential(&self, c: ScramCredential) -> StoreResult<()> {
        validate_user_name(&c.user)?;
        let iterations = i32::try_from(c.iterations).map_err(|_| {
            StoreError::InvalidArgument(format!("{} iterations is too many", c.iterations))
        })?;
        let client = self.conn().await?;
        client
            .execute(
                "INSERT INTO scram_credentials (username, mechanism, salt, iterations, stored_key, server_key) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (username, mechanism) DO UPDATE SET salt = EXCLUDED.salt, \
                 iterations = EXCLUDED.iterations, stored_key = EXCLUDED.stored_key, \
                 server_key = EXCLUDED.server_key",
                &[
                    &c.user,
                    &c.mechanism.name(),
                    &c.salt,
                    &iterations,
                    &c.stored_key,
                    &c.server_key,
                ],
            )
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub(crate) async fn do_get_credential(
        &self,
        user: &str,
        mechanism: ScramMechanism,
    ) -> StoreResult<Option<ScramCredential>> {
        let client = self.conn().await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT {CREDENTIAL_COLUMNS} FROM scram_credentials \
                     WHERE username = $1 AND mechanism = $2"
                ),
                &[&user, &mechanism.name()],
            )
            .await
            .map_err(db_err)?;
        row.as_ref().map(credential).transpose()
    }

    pub(crate) async fn do_list_credentials(&self) -> StoreResult<Vec<ScramCredential>> {
        let client = self.conn().await?;
        let rows = client
            .query(
                &format!("SELECT {CREDENTIAL_COLUMNS} FROM scram_credentials"),
                &[],
            )
            .await
            .map_err(db_err)?;
        let mut out = rows
            .iter()
            .map(credential)
            .collect::<StoreResult<Vec<_>>>()?;
        // Byte order, whatever the database's collation.
        out.sort_by(|a, b| (&a.user, a.mechanism).cmp(&(&b.user, b.mechanism)));
        Ok(out)
    }

    pub(crate) async fn do_delete_credential(
        &self,
        user: &str,
        mechanism: ScramMechanism,
    ) -> StoreResult<bool> {
        let client = self.conn().await?;
        let n = client
            .execute(
                "DELETE FROM scram_credentials WHERE username = $1 AND mechanism = $2",
                &[&user, &mechanism.name()],
            )
            .await
            .map_err(db_err)?;
        Ok(n > 0)
    }

    pub(crate) async fn do_create_acls(&self, acls: &[AclBinding]) -> StoreResult<()> {
        let mut client = self.conn().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        for a in acls {
            let [rt, pt, op, perm] = acl_params(a);
            tx.execute(
                "INSERT INTO acls (resource_type, resource_name, pattern_type, principal, host, \
                 operation, permission_type) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT DO NOTHING",
                &[
                    &rt,
                    &a.resource_name,
                    &pt,
                    &a.principal,
                    &a.host,
                    &op,
                    &perm,
                ],
            )
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    pub(crate) async fn do_list_acls(&self) -> StoreResult<Vec<AclBinding>> {
        let client = self.conn().await?;
        let rows = client
            .query(
                "SELECT resource_type, resource_name, pattern_type, principal, host, operation, \
                 permission_type FROM acls",
                &[],
            )
            .await
            .map_err(db_err)?;
        let mut out: Vec<AclBinding> = rows.iter().map(acl).collect();
        out.sort();
        Ok(out)
    }

    pub(crate) async fn do_delete_acls(&self, acls: &[AclBinding]) -> StoreResult<u64> {
        let mut client = self.conn().await?;
        let tx = client.transaction().await.map_err(db_err)?;
        let mut removed = 0;
        for a in acls {
            let [rt, pt, op, perm] = acl_params(a);
            removed += tx
                .execute(
                    "DELETE FROM acls WHERE resource_type = $1 AND resource_name = $2 AND \
                     pattern_type = $3 AND principal = $4 AND host = $5 AND operation = $6 AND \
                     permission_type = $7",
                    &[
                        &rt,
                        &a.resource_name,
                        &pt,
                        &a.principal,
                        &a.host,
                        &op,
                        &perm,
                    ],
                )
                .await
                .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(removed)
    }
}
