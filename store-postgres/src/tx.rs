//! Transactions on a pooled connection whose statements can be pipelined (BEGIN goes out in
//! the same round trip as the first statement, COMMIT with the last one).

use deadpool_postgres::{ClientWrapper, Object};

use broker_api::StoreResult;

use crate::error::db_err;

/// An open transaction. Dropped without `commit`/`rollback` (an error or a cancelled call),
/// its connection is closed instead of going back to the pool, so no half-done transaction
/// can leak to the next user.
pub(crate) struct Tx {
    obj: Option<Object>,
    open: bool,
}

impl Tx {
    /// Wraps a connection on which the caller is about to send `BEGIN`.
    pub(crate) fn new(obj: Object) -> Tx {
        Tx {
            obj: Some(obj),
            open: true,
        }
    }

    pub(crate) fn client(&self) -> &ClientWrapper {
        self.obj.as_ref().expect("transaction connection")
    }

    /// Commits; on success the connection goes back to the pool.
    pub(crate) async fn commit(mut self) -> StoreResult<()> {
        self.client()
            .batch_execute("COMMIT")
            .await
            .map_err(db_err)?;
        self.open = false;
        Ok(())
    }

    /// Marks the transaction finished after a COMMIT or ROLLBACK sent by the caller succeeded.
    pub(crate) fn finished(&mut self) {
        self.open = false;
    }

    /// Rolls back (used when a call fails for a reason of its own, not a database error).
    pub(crate) async fn rollback(mut self) {
        if self.client().batch_execute("ROLLBACK").await.is_ok() {
            self.open = false;
        }
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        if self.open {
            if let Some(obj) = self.obj.take() {
                drop(Object::take(obj));
            }
        }
    }
}
