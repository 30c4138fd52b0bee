//! `KvClient`: the RheaKV API over the network (or, inside a server, over
//! the node's own router). It maps keys to regions, splits multi-key
//! operations per region (run concurrently, answered in the caller's order),
//! and leaves routing and bounded retries to the [`Router`].
//!
//! Multi-key writes (`batch_put`, `batch_delete`) are atomic per region, not
//! across regions.

use std::collections::BTreeMap;

use bytes::Bytes;
use tokio::task::JoinSet;

use crate::command::{KvAnswer, KvCommand, ReadOp};
use crate::error::KvError;
use crate::region::RegionId;
use crate::router::{RegionRequest, Router, RouterOptions};
use crate::store::ReadConsistency;

/// Cheap to clone.
#[derive(Clone)]
pub struct KvClient {
    router: Router,
    consistency: ReadConsistency,
}

fn unexpected(a: KvAnswer) -> KvError {
    KvError::Protocol(format!("unexpected answer {a:?}"))
}

fn value_of(a: KvAnswer) -> Result<Option<Bytes>, KvError> {
    match a {
        KvAnswer::Value(v) => Ok(v),
        a => Err(unexpected(a)),
    }
}

fn bool_of(a: KvAnswer) -> Result<bool, KvError> {
    match a {
        KvAnswer::Bool(b) => Ok(b),
        a => Err(unexpected(a)),
    }
}

/// The sum of per-region counts (delete_range, batch_delete).
fn total_count(answers: impl IntoIterator<Item = KvAnswer>) -> Result<u64, KvError> {
    answers.into_iter().try_fold(0, |n, a| match a {
        KvAnswer::Count(c) => Ok(n + c),
        a => Err(unexpected(a)),
    })
}

impl KvClient {
    /// A client of the cluster reachable at `seeds` (client addresses of any
    /// nodes). Fetches the region layout once; fails clearly if no seed answers.
    pub async fn connect(seeds: Vec<String>, opts: RouterOptions) -> Result<KvClient, KvError> {
        let router = Router::new(None, seeds, opts);
        router.refresh_routes().await?;
        Ok(KvClient::from_router(router))
    }

    pub fn from_router(router: Router) -> KvClient {
        KvClient {
            router,
            consistency: ReadConsistency::Linearizable,
        }
    }

    /// The same client with another default read consistency.
    pub fn with_consistency(&self, c: ReadConsistency) -> KvClient {
        KvClient {
            router: self.router.clone(),
            consistency: c,
        }
    }

    pub fn consistency(&self) -> ReadConsistency {
        self.consistency
    }

    pub fn router(&self) -> &Router {
        &self.router
    }

    async fn region(&self, key: &[u8]) -> Result<RegionId, KvError> {
        self.router.region_for(key).await
    }

    async fn write(&self, key: &[u8], cmd: KvCommand) -> Result<KvAnswer, KvError> {
        let region = self.region(key).await?;
        self.router.execute(region, RegionRequest::Write(cmd)).await
    }

    async fn read(&self, key: &[u8], op: ReadOp) -> Result<KvAnswer, KvError> {
        let region = self.region(key).await?;
        self.router
            .execute(region, RegionRequest::Read(op, self.consistency))
            .await
    }

    pub async fn get(&self, key: impl Into<Bytes>) -> Result<Option<Bytes>, KvError> {
        let key = key.into();
        value_of(self.read(&key.clone(), ReadOp::Get { key }).await?)
    }

    pub async fn contains_key(&self, key: impl Into<Bytes>) -> Result<bool, KvError> {
        let key = key.into();
        bool_of(self.read(&key.clone(), ReadOp::ContainsKey { key }).await?)
    }

    /// Group `keys` by region, remembering each key's position.
    async fn by_region(
        &self,
        keys: &[Bytes],
    ) -> Result<BTreeMap<RegionId, Vec<(usize, Bytes)>>, KvError> {
        let mut groups: BTreeMap<RegionId, Vec<(usize, Bytes)>> = BTreeMap::new();
        for (i, k) in keys.iter().enumerate() {
            groups
                .entry(self.region(k).await?)
                .or_default()
                .push((i, k.clone()));
        }
        Ok(groups)
    }

    /// Run one request per region concurrently; answers keyed by region.
    async fn fan_out(
        &self,
        reqs: Vec<(RegionId, RegionRequest)>,
    ) -> Result<BTreeMap<RegionId, KvAnswer>, KvError> {
        if reqs.len() == 1 {
            let mut out = BTreeMap::new();
            for (r, req) in reqs {
                out.insert(r, self.router.execute(r, req).await?);
            }
            return Ok(out);
        }
        let mut set = JoinSet::new();
        for (r, req) in reqs {
            let router = self.router.clone();
            set.spawn(async move { (r, router.execute(r, req).await) });
        }
        let mut out = BTreeMap::new();
        while let Some(j) = set.join_next().await {
            let (r, a) = j.map_err(|e| KvError::Protocol(format!("task failed: {e}")))?;
            out.insert(r, a?);
        }
        Ok(out)
    }

    pub async fn multi_get(&self, keys: Vec<Bytes>) -> Result<Vec<Option<Bytes>>, KvError> {
        let groups = self.by_region(&keys).await?;
        let reqs = groups
            .iter()
            .map(|(r, ks)| {
                let keys = ks.iter().map(|(_, k)| k.clone()).collect();
                (
                    *r,
                    RegionRequest::Read(ReadOp::MultiGet { keys }, self.consistency),
                )
            })
            .collect();
        let answers = self.fan_out(reqs).await?;
        let mut out = vec![None; keys.len()];
        for (r, ks) in groups {
            match answers.get(&r) {
                Some(KvAnswer::Values(vs)) if vs.len() == ks.len() => {
                    for ((i, _), v) in ks.iter().zip(vs) {
                        if let Some(slot) = out.get_mut(*i) {
                            *slot = v.clone();
                        }
                    }
                }
                other => return Err(KvError::Protocol(format!("multi_get answer {other:?}"))),
            }
        }
        Ok(out)
    }

    /// Pairs in `[start, end)` (empty `end`: to the end), at most `limit`,
    /// ascending (`reverse`: descending), across regions.
    pub async fn scan(
        &self,
        start: impl Into<Bytes>,
        end: impl Into<Bytes>,
        limit: u32,
        reverse: bool,
    ) -> Result<Vec<(Bytes, Bytes)>, KvError> {
        let (start, end) = (start.into(), end.into());
        let mut routes: Vec<_> = self.router.routes().await?.iter().cloned().collect();
        if reverse {
            routes.reverse();
        }
        let mut out = Vec::new();
        for r in routes {
            let remaining = limit.saturating_sub(out.len() as u32);
            if remaining == 0 {
                break;
            }
            if r.range.clamp(&start, &end).is_none() {
                continue;
            }
            let op = ReadOp::Scan {
                start: start.clone(),
                end: end.clone(),
                limit: remaining,
                reverse,
            };
            match self
                .router
                .execute(r.range.id, RegionRequest::Read(op, self.consistency))
                .await?
            {
                KvAnswer::Pairs(p) => out.extend(p),
                a => return Err(unexpected(a)),
            }
        }
        Ok(out)
    }

    pub async fn put(&self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> Result<(), KvError> {
        let key = key.into();
        let cmd = KvCommand::Put {
            key: key.clone(),
            value: value.into(),
        };
        match self.write(&key, cmd).await? {
            KvAnswer::Done => Ok(()),
            a => Err(unexpected(a)),
        }
    }

    /// Put when absent; returns the existing value (None: the put happened).
    pub async fn put_if_absent(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<Option<Bytes>, KvError> {
        let key = key.into();
        value_of(
            self.write(
                &key.clone(),
                KvCommand::PutIfAbsent {
                    key,
                    value: value.into(),
                },
            )
            .await?,
        )
    }

    /// Put and return the previous value.
    pub async fn get_and_put(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<Option<Bytes>, KvError> {
        let key = key.into();
        value_of(
            self.write(
                &key.clone(),
                KvCommand::GetAndPut {
                    key,
                    value: value.into(),
                },
            )
            .await?,
        )
    }

    /// Set `key` to `value` if it is `expect`; an absent key never matches.
    pub async fn compare_and_put(
        &self,
        key: impl Into<Bytes>,
        expect: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<bool, KvError> {
        let key = key.into();
        let cmd = KvCommand::CompareAndPut {
            key: key.clone(),
            expect: expect.into(),
            value: value.into(),
        };
        bool_of(self.write(&key, cmd).await?)
    }

    /// Delete; returns whether the key existed.
    pub async fn delete(&self, key: impl Into<Bytes>) -> Result<bool, KvError> {
        let key = key.into();
        bool_of(self.write(&key.clone(), KvCommand::Delete { key }).await?)
    }

    /// Delete every key in `[start, end)` (empty `end`: to the end); returns
    /// how many were removed. Atomic per region.
    pub async fn delete_range(
        &self,
        start: impl Into<Bytes>,
        end: impl Into<Bytes>,
    ) -> Result<u64, KvError> {
        let (start, end) = (start.into(), end.into());
        let reqs = self
            .router
            .routes()
            .await?
            .iter()
            .filter(|r| r.range.clamp(&start, &end).is_some())
            .map(|r| {
                (
                    r.range.id,
                    RegionRequest::Write(KvCommand::DeleteRange {
                        start: start.clone(),
                        end: end.clone(),
                    }),
                )
            })
            .collect();
        total_count(self.fan_out(reqs).await?.into_values())
    }

    /// Put every pair (atomic per region).
    pub async fn batch_put(&self, pairs: Vec<(Bytes, Bytes)>) -> Result<(), KvError> {
        let keys: Vec<Bytes> = pairs.iter().map(|(k, _)| k.clone()).collect();
        let groups = self.by_region(&keys).await?;
        let reqs = groups
            .into_iter()
            .map(|(r, ks)| {
                let pairs = ks
                    .into_iter()
                    .filter_map(|(i, _)| pairs.get(i).cloned())
                    .collect();
                (r, RegionRequest::Write(KvCommand::BatchPut { pairs }))
            })
            .collect();
        self.fan_out(reqs).await.map(|_| ())
    }

    /// Delete every key (atomic per region); returns how many existed.
    pub async fn batch_delete(&self, keys: Vec<Bytes>) -> Result<u64, KvError> {
        let groups = self.by_region(&keys).await?;
        let reqs = groups
            .into_iter()
            .map(|(r, ks)| {
                let keys = ks.into_iter().map(|(_, k)| k).collect();
                (r, RegionRequest::Write(KvCommand::BatchDelete { keys }))
            })
            .collect();
        total_count(self.fan_out(reqs).await?.into_values())
    }
}
