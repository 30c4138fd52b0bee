//! An in-memory transaction coordinator: global row locks keyed by
//! `resource_id^^^table^^^pk` with their owner XID, a branch id counter,
//! and a record of registrations and reports.

use std::collections::HashMap;
use std::sync::Mutex;

use rhea_txn::protocol::{BranchStatus, BranchType, GlobalStatus};
use rhea_txn_client::{BoxFuture, TcApi, TxnError};

#[derive(Clone, Debug)]
pub struct Registration {
    pub xid: String,
    pub resource_id: String,
    pub lock_key: String,
    /// `None` when refused for a lock conflict.
    pub branch_id: Option<i64>,
}

#[derive(Default)]
struct State {
    locks: HashMap<String, String>,
    next_branch_id: i64,
    registrations: Vec<Registration>,
    reports: Vec<(String, i64, BranchStatus)>,
    lock_queries: usize,
}

pub struct FakeTc {
    state: Mutex<State>,
}

fn row_keys(resource_id: &str, lock_key: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in lock_key.split(';').filter(|p| !p.is_empty()) {
        let Some((table, pks)) = part.split_once(':') else {
            continue;
        };
        for pk in pks.split(',') {
            out.push(format!("{resource_id}^^^{table}^^^{pk}"));
        }
    }
    out
}

impl FakeTc {
    pub fn new() -> Self {
        FakeTc {
            state: Mutex::new(State {
                next_branch_id: 1000,
                ..State::default()
            }),
        }
    }

    fn st(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The id the next successful registration gets.
    pub fn next_branch_id(&self) -> i64 {
        self.st().next_branch_id
    }

    /// Phase two done: the global transaction's locks go.
    pub fn release(&self, xid: &str) {
        self.st().locks.retain(|_, owner| owner != xid);
    }

    pub fn registrations(&self, xid: &str) -> Vec<Registration> {
        self.st()
            .registrations
            .iter()
            .filter(|r| r.xid == xid)
            .cloned()
            .collect()
    }

    pub fn reports(&self) -> Vec<(String, i64, BranchStatus)> {
        self.st().reports.clone()
    }

    pub fn lock_queries(&self) -> usize {
        self.st().lock_queries
    }
}

impl TcApi for FakeTc {
    fn global_begin<'a>(
        &'a self,
        _name: &'a str,
        _timeout_ms: u32,
    ) -> BoxFuture<'a, Result<String, TxnError>> {
        Box::pin(async { Err(TxnError::Application("not used".into())) })
    }

    fn global_commit<'a>(&'a self, _xid: &'a str) -> BoxFuture<'a, Result<GlobalStatus, TxnError>> {
        Box::pin(async { Ok(GlobalStatus::Committed) })
    }

    fn global_rollback<'a>(
        &'a self,
        _xid: &'a str,
    ) -> BoxFuture<'a, Result<GlobalStatus, TxnError>> {
        Box::pin(async { Ok(GlobalStatus::Rollbacked) })
    }

    fn global_status<'a>(&'a self, _xid: &'a str) -> BoxFuture<'a, Result<GlobalStatus, TxnError>> {
        Box::pin(async { Ok(GlobalStatus::Begin) })
    }

    fn branch_register<'a>(
        &'a self,
        branch_type: BranchType,
        xid: &'a str,
        resource_id: &'a str,
        lock_key: &'a str,
        _application_data: Option<&'a str>,
    ) -> BoxFuture<'a, Result<i64, TxnError>> {
        Box::pin(async move {
            assert_eq!(branch_type, BranchType::At);
            let mut st = self.st();
            let keys = row_keys(resource_id, lock_key);
            let conflict = keys
                .iter()
                .find(|k| st.locks.get(*k).is_some_and(|owner| owner != xid))
                .cloned();
            let mut reg = Registration {
                xid: xid.to_owned(),
                resource_id: resource_id.to_owned(),
                lock_key: lock_key.to_owned(),
                branch_id: None,
            };
            if let Some(k) = conflict {
                st.registrations.push(reg);
                return Err(TxnError::LockConflict(k));
            }
            for k in keys {
                st.locks.insert(k, xid.to_owned());
            }
            let id = st.next_branch_id;
            st.next_branch_id += 1;
            reg.branch_id = Some(id);
            st.registrations.push(reg);
            Ok(id)
        })
    }

    fn branch_report<'a>(
        &'a self,
        _branch_type: BranchType,
        xid: &'a str,
        branch_id: i64,
        status: BranchStatus,
        _application_data: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), TxnError>> {
        Box::pin(async move {
            self.st().reports.push((xid.to_owned(), branch_id, status));
            Ok(())
        })
    }

    fn global_lock_query<'a>(
        &'a self,
        _branch_type: BranchType,
        xid: Option<&'a str>,
        resource_id: &'a str,
        lock_key: &'a str,
    ) -> BoxFuture<'a, Result<bool, TxnError>> {
        Box::pin(async move {
            let mut st = self.st();
            st.lock_queries += 1;
            let free = row_keys(resource_id, lock_key).iter().all(|k| {
                st.locks
                    .get(k)
                    .is_none_or(|owner| Some(owner.as_str()) == xid)
            });
            Ok(free)
        })
    }
}
