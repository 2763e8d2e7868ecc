//! SCRAM credentials and ACL bindings of a log store: one JSON file, `security.json`, in the
//! data directory, replaced atomically (written to a temporary file, fsynced, renamed over
//! the old one, directory fsynced), so a crash leaves either the old or the new file.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use broker_api::{AclBinding, ScramCredential, ScramMechanism, StoreResult};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::error::{LogError, LogResult};

/// The file name in the data directory.
pub const SECURITY_FILE: &str = "security.json";

#[derive(Default, Clone, Serialize, Deserialize)]
struct Contents {
    credentials: Vec<ScramCredential>,
    acls: Vec<AclBinding>,
}

#[derive(Default)]
struct State {
    credentials: BTreeMap<(String, ScramMechanism), ScramCredential>,
    acls: BTreeSet<AclBinding>,
}

/// The security file and its contents in memory; every change is written before it returns.
pub struct SecurityFile {
    dir: PathBuf,
    state: Mutex<State>,
}

impl SecurityFile {
    /// Reads `dir/security.json` (none yet: empty).
    pub fn load(dir: &Path) -> LogResult<SecurityFile> {
        let path = dir.join(SECURITY_FILE);
        let mut state = State::default();
        match std::fs::read(&path) {
            Ok(bytes) => {
                let c: Contents = serde_json::from_slice(&bytes).map_err(|e| {
                    LogError::Metadata(format!("{} is damaged: {e}", path.display()))
                })?;
                for cred in c.credentials {
                    state
                        .credentials
                        .insert((cred.user.clone(), cred.mechanism), cred);
                }
                state.acls.extend(c.acls);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(LogError::io(format!("reading {}", path.display()), e)),
        }
        Ok(SecurityFile {
            dir: dir.to_path_buf(),
            state: Mutex::new(state),
        })
    }

    /// Applies `change` to a copy of the state, writes it, and only then keeps it.
    fn change<T>(&self, change: impl FnOnce(&mut State) -> T) -> StoreResult<T> {
        let mut state = self.state.lock();
        let mut next = State {
            credentials: state.credentials.clone(),
            acls: state.acls.clone(),
        };
        let out = change(&mut next);
        self.write(&next)?;
        *state = next;
        Ok(out)
    }

    fn write(&self, state: &State) -> LogResult<()> {
        let contents = Contents {
            credentials: state.credentials.values().cloned().collect(),
            acls: state.acls.iter().cloned().collect(),
        };
        let bytes = serde_json::to_vec(&contents)
            .map_err(|e| LogError::Metadata(format!("encoding {SECURITY_FILE}: {e}")))?;
        let tmp = self.dir.join(format!("{SECURITY_FILE}.tmp"));
        let path = self.dir.join(SECURITY_FILE);
        let ctx = |what: &str| format!("{what} {}", tmp.display());
        let mut f = std::fs::File::create(&tmp).map_err(|e| LogError::io(ctx("creating"), e))?;
        f.write_all(&bytes)
            .map_err(|e| LogError::io(ctx("writing"), e))?;
        f.sync_all().map_err(|e| LogError::io(ctx("syncing"), e))?;
        drop(f);
        std::fs::rename(&tmp, &path)
            .map_err(|e| LogError::io(format!("renaming to {}", path.display()), e))?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| LogError::io(format!("syncing {}", self.dir.display()), e))
    }

    pub fn put_credential(&self, c: ScramCredential) -> StoreResult<()> {
        broker_api::validate_user_name(&c.user)?;
        self.change(|s| {
            s.credentials.insert((c.user.clone(), c.mechanism), c);
        })
    }

    pub fn get_credential(&self, user: &str, m: ScramMechanism) -> Option<ScramCredential> {
        self.state
            .lock()
            .credentials
            .get(&(user.to_string(), m))
            .cloned()
    }

    pub fn list_credentials(&self) -> Vec<ScramCredential> {
        self.state.lock().credentials.values().cloned().collect()
    }

    pub fn delete_credential(&self, user: &str, m: ScramMechanism) -> StoreResult<bool> {
        let key = (user.to_string(), m);
        if !self.state.lock().credentials.contains_key(&key) {
            return Ok(false);
        }
        self.change(|s| s.credentials.remove(&key).is_some())
    }

    pub fn create_acls(&self, acls: &[AclBinding]) -> StoreResult<()> {
        if acls.iter().all(|a| self.state.lock().acls.contains(a)) {
            return Ok(());
        }
        self.change(|s| s.acls.extend(acls.iter().cloned()))
    }

    pub fn list_acls(&self) -> Vec<AclBinding> {
        self.state.lock().acls.iter().cloned().collect()
    }

    pub fn delete_acls(&self, acls: &[AclBinding]) -> StoreResult<u64> {
        if !acls.iter().any(|a| self.state.lock().acls.contains(a)) {
            return Ok(0);
        }
        self.change(|s| acls.iter().filter(|a| s.acls.remove(*a)).count() as u64)
    }
}
