//! The lease operations of the log store: lease groups, lease, ack, release, extend, lease
//! counts, resets of the lease start and deletion of lease groups, over the journaled lease
//! state of [`crate::lease`].

use super::*;

/// The lease state of one partition for one group (if the group has any), with the state
/// below the log start dropped.
fn current_leases<'a>(
    meta: &'a mut Meta,
    topic: &str,
    group: &str,
    partition: i32,
    log_start: i64,
) -> Option<&'a PartLeases> {
    let st = meta
        .state
        .leases
        .get_mut(topic)
        .and_then(|g| g.get_mut(group))
        .and_then(|p| p.get_mut(&partition))?;
    st.normalize(log_start);
    Some(st)
}

fn group_config(meta: &Meta, topic: &str, group: &str) -> LeaseGroupConfig {
    meta.state
        .lease_groups
        .get(topic)
        .and_then(|g| g.get(group))
        .cloned()
        .unwrap_or_default()
}

/// The keys of the partition's records that are in flight (leased, not expired) at `now`:
/// with `ordered_by_key` no record of such a key is leased. Records are read up to the high
/// watermark whatever the group's isolation (an in-flight record may be of an open or aborted
/// transaction). Records that cannot be read (damage) count as keyless; the lease scan stops
/// at them anyway.
fn in_flight_keys(
    p: &Partition,
    st: &PartLeases,
    now: i64,
    hw: i64,
    verify: bool,
) -> HashSet<Bytes> {
    let mut keys = HashSet::new();
    // Read in runs: in-flight records of one receive usually sit close together.
    let mut chunk: Vec<broker_api::StoredRecord> = Vec::new();
    for (&offset, r) in st.recs.range(st.floor..hw) {
        if !matches!(r.phase, Phase::Leased { expires, .. } if expires > now) {
            continue;
        }
        let cached = chunk.first().is_some_and(|f| {
            f.offset <= offset && chunk.last().is_some_and(|l| l.offset >= offset)
        });
        if !cached {
            chunk = p
                .read_for_lease(offset, 64, verify, false)
                .map(|(recs, _)| recs)
                .unwrap_or_default();
        }
        if let Some(k) = chunk
            .iter()
            .find(|rec| rec.offset == offset)
            .and_then(|rec| rec.key.clone())
        {
            keys.insert(k);
        }
    }
    keys
}

impl Inner {
    /// [`Store::set_lease_group`] on the log store.
    pub(super) async fn set_lease_group(
        &self,
        topic: &str,
        group: &str,
        config: LeaseGroupConfig,
    ) -> StoreResult<()> {
        let inner = self;
        let t = inner.topic(topic)?;
        validate_group_name(group)?;
        // Without a dead-letter topic, records past max_deliveries are archived (rule
        // **max_deliveries_without_dead_letter_topic_archives**).
        if config.max_deliveries == Some(0) {
            return Err(StoreError::InvalidArgument(
                "max_deliveries must be at least 1".into(),
            ));
        }
        if let Some(dl) = &config.dead_letter_topic {
            inner.topic(dl)?;
        }
        let seq = {
            let mut meta = inner.meta.lock();
            inner.record(
                &mut meta,
                Op::LeaseGroup {
                    topic: topic.to_string(),
                    group: group.to_string(),
                    config,
                },
            )?
        };
        let d = t.config.read().durability;
        inner.meta_durable(seq, d).await
    }

    /// [`Store::lease_groups`] on the log store.
    pub(super) async fn lease_groups(
        &self,
        topic: &str,
    ) -> StoreResult<BTreeMap<String, LeaseGroupConfig>> {
        self.topic(topic)?;
        let meta = self.meta.lock();
        let mut out: BTreeMap<String, LeaseGroupConfig> = meta
            .state
            .lease_groups
            .get(topic)
            .cloned()
            .unwrap_or_default();
        if let Some(groups) = meta.state.leases.get(topic) {
            for g in groups.keys() {
                out.entry(g.clone()).or_default();
            }
        }
        Ok(out)
    }

    /// [`Store::lease`] on the log store.
    pub(super) async fn lease(
        &self,
        topic: &str,
        partition: i32,
        group: &str,
        max: usize,
        visibility: Duration,
    ) -> StoreResult<Vec<Lease>> {
        let inner = self;
        let t = inner.topic(topic)?;
        validate_group_name(group)?;
        let p = t.partition(topic, partition)?.clone();
        if max == 0 {
            return Ok(Vec::new());
        }
        let vis = visibility.as_millis().min(i64::MAX as u128 / 4) as i64;
        let verify = inner.opts.verify_reads;
        let mut out = Vec::new();
        let mut dl_syncs: Vec<(Arc<Partition>, i64)> = Vec::new();
        let seq = {
            let mut meta = inner.meta.lock();
            let cfg = group_config(&meta, topic, group);
            let now = inner.clock.now_ms();
            // A read-committed group leases nothing at or past the last stable offset, a
            // read-uncommitted one up to the high watermark (rule **leases_read_committed**).
            let (log_start, hw, lso) = p.stable_offsets();
            let committed = !cfg.read_uncommitted;
            let end = if committed { lso } else { hw };
            let empty = PartLeases {
                floor: log_start,
                ..PartLeases::default()
            };
            let st =
                current_leases(&mut meta, topic, group, partition, log_start).unwrap_or(&empty);
            let floor = st.floor;
            // Where every record below is done: the floor moves over control records and,
            // for a read-committed group, records of aborted transactions (never leased, done
            // for the group), so that it does not stay behind them.
            let mut done_to = floor;
            let mut changed: Vec<(i64, RecState)> = Vec::new();
            let mut dead: Vec<i64> = Vec::new();
            let mut blocked: HashSet<Bytes> = if cfg.ordered_by_key {
                in_flight_keys(&p, st, now, hw, verify)
            } else {
                HashSet::new()
            };
            let mut pos = floor;
            'scan: while pos < end {
                if !cfg.ordered_by_key {
                    // Records done or in flight need nothing from the log (their keys matter
                    // only under ordering by key): step over them without reading them.
                    while pos < end && st.recs.get(&pos).is_some_and(|s| s.is_busy(now)) {
                        if done_to == pos && st.recs[&pos].is_done() {
                            done_to += 1;
                        }
                        pos += 1;
                    }
                    if pos >= end {
                        break;
                    }
                }
                // Read about what this call still needs (decoding is the scan's cost), more
                // when records further on may be skipped.
                let want = ((max - out.len()) * 2).clamp(16, 512);
                let (recs, read_to) = match p.read_for_lease(pos, want, verify, committed) {
                    Ok(read) => read,
                    Err(StoreError::Corrupt(m)) => {
                        // The records before the damage are leased; the damaged ones stay
                        // not done (never acked or skipped), so the scan stops at them. The
                        // read logged the damage once (WARN); this repeats on every call.
                        tracing::debug!(
                            topic,
                            partition,
                            group,
                            offset = pos,
                            error = %m,
                            "lease scan stopped at a damaged batch; its records and later ones are not delivered"
                        );
                        break 'scan;
                    }
                    Err(e) => return Err(e),
                };
                if recs.is_empty() && read_to <= pos {
                    break;
                }
                for rec in recs {
                    // Offsets skipped before it are control records or (read committed)
                    // aborted ones.
                    if done_to == pos {
                        done_to = rec.offset;
                    }
                    pos = rec.offset + 1;
                    let state = st.recs.get(&rec.offset).copied();
                    if state.is_some_and(|s| s.is_done()) {
                        if done_to == rec.offset {
                            done_to += 1;
                        }
                        continue;
                    }
                    let busy = state.is_some_and(|s| s.is_busy(now))
                        || rec.not_before_ms.is_some_and(|nb| nb > now);
                    let key_blocked =
                        cfg.ordered_by_key && rec.key.as_ref().is_some_and(|k| blocked.contains(k));
                    if busy || key_blocked {
                        if cfg.ordered_by_key {
                            if let Some(k) = &rec.key {
                                blocked.insert(k.clone());
                            }
                        }
                        continue;
                    }
                    let prev = state.map_or(0, |s| s.deliveries);
                    let first = state.map_or(now, |s| {
                        if s.deliveries == 0 {
                            now
                        } else {
                            s.first_leased_at
                        }
                    });
                    if cfg.max_deliveries.is_some_and(|m| prev >= m) {
                        // Dead-letter instead of a delivery beyond the limit: a copy goes to
                        // the dead-letter topic, or nowhere without one (archived).
                        if let Some(dl_name) = &cfg.dead_letter_topic {
                            let dlt = inner.topic(dl_name)?;
                            let dl_batch = AppendBatch::new(vec![
                                rec.to_dead_letter(topic, partition, group, prev)
                            ]);
                            let (res, dlp, d) = inner.append_sync(&dlt, dl_name, 0, &dl_batch)?;
                            if d == Durability::Always {
                                dl_syncs.push((dlp, res.last_offset + 1));
                            }
                        }
                        let s = RecState {
                            deliveries: prev,
                            first_leased_at: state.map_or(now, |s| s.first_leased_at),
                            phase: Phase::Done { dead: true },
                        };
                        changed.push((rec.offset, s));
                        dead.push(rec.offset);
                        continue;
                    }
                    let nonce = rand::random::<u64>();
                    let expires = now.saturating_add(vis);
                    let s = RecState {
                        deliveries: prev + 1,
                        first_leased_at: first,
                        phase: Phase::Leased { nonce, expires },
                    };
                    changed.push((rec.offset, s));
                    // A record leased by this call does not block the later records of its
                    // key: one call leases a key's records in order.
                    out.push(Lease {
                        token: LeaseToken {
                            partition,
                            offset: rec.offset,
                            nonce,
                        },
                        record: rec,
                        delivery_count: prev + 1,
                        expires_at_ms: expires,
                        first_leased_at_ms: first,
                    });
                    if out.len() >= max {
                        break 'scan;
                    }
                }
                // Skipped after the last record returned.
                if done_to == pos {
                    done_to = read_to;
                }
                pos = pos.max(read_to);
            }
            let floor = done_to.max(floor);
            if changed.is_empty() && floor == st.floor {
                None
            } else {
                let seq = inner.record(
                    &mut meta,
                    Op::Lease {
                        topic: topic.to_string(),
                        group: group.to_string(),
                        partition,
                        floor,
                        set: changed,
                        dead,
                    },
                )?;
                Some(seq)
            }
        };
        for (dlp, hw) in dl_syncs {
            dlp.sync_to(hw).await?;
        }
        if let Some(seq) = seq {
            let d = t.config.read().durability;
            inner.meta_durable(seq, d).await?;
        }
        Ok(out)
    }

    /// [`Store::ack`] on the log store.
    pub(super) async fn ack(
        &self,
        topic: &str,
        group: &str,
        tokens: &[LeaseToken],
    ) -> StoreResult<Vec<StoreResult<()>>> {
        let inner = self;
        let t = inner.topic(topic)?;
        validate_group_name(group)?;
        let mut results = Vec::with_capacity(tokens.len());
        let mut seqs = Vec::new();
        {
            let mut meta = inner.meta.lock();
            let now = inner.clock.now_ms();
            // Changes are collected and take effect only once journaled.
            let mut staged: BTreeMap<i32, (i64, Vec<(i64, RecState)>)> = BTreeMap::new();
            for tok in tokens {
                let r = (|| {
                    let p = t.partition(topic, tok.partition)?;
                    let (log_start, _) = p.offsets();
                    let st = current_leases(&mut meta, topic, group, tok.partition, log_start)
                        .ok_or(StoreError::LeaseExpired)?;
                    let mut rec = st.live_copy(tok, now, true)?;
                    rec.phase = Phase::Done { dead: false };
                    let floor = st.floor;
                    let (_, set) = staged.entry(tok.partition).or_insert((floor, Vec::new()));
                    if set.iter().any(|(o, _)| *o == tok.offset) {
                        // Acked earlier in this same call.
                        return Err(StoreError::LeaseExpired);
                    }
                    set.push((tok.offset, rec));
                    Ok(())
                })();
                results.push(r);
            }
            for (partition, (floor, set)) in staged {
                seqs.push(inner.record(
                    &mut meta,
                    Op::Lease {
                        topic: topic.to_string(),
                        group: group.to_string(),
                        partition,
                        floor,
                        set,
                        dead: Vec::new(),
                    },
                )?);
            }
        }
        if let Some(&seq) = seqs.iter().max() {
            let d = t.config.read().durability;
            inner.meta_durable(seq, d).await?;
        }
        Ok(results)
    }

    /// [`Store::release`] on the log store.
    pub(super) async fn release(
        &self,
        topic: &str,
        group: &str,
        token: LeaseToken,
        delay: Duration,
    ) -> StoreResult<()> {
        let inner = self;
        let t = inner.topic(topic)?;
        validate_group_name(group)?;
        let p = t.partition(topic, token.partition)?;
        let (log_start, _) = p.offsets();
        let delay = delay.as_millis().min(i64::MAX as u128 / 4) as i64;
        let seq = {
            let mut meta = inner.meta.lock();
            let now = inner.clock.now_ms();
            let st = current_leases(&mut meta, topic, group, token.partition, log_start)
                .ok_or(StoreError::LeaseExpired)?;
            let mut rec = st.live_copy(&token, now, false)?;
            rec.phase = Phase::Released {
                at: now.saturating_add(delay),
            };
            let set = vec![(token.offset, rec)];
            let floor = st.floor;
            inner.record(
                &mut meta,
                Op::Lease {
                    topic: topic.to_string(),
                    group: group.to_string(),
                    partition: token.partition,
                    floor,
                    set,
                    dead: Vec::new(),
                },
            )?
        };
        let d = t.config.read().durability;
        inner.meta_durable(seq, d).await
    }

    /// [`Store::extend`] on the log store.
    pub(super) async fn extend(
        &self,
        topic: &str,
        group: &str,
        token: LeaseToken,
        visibility: Duration,
    ) -> StoreResult<i64> {
        let inner = self;
        let t = inner.topic(topic)?;
        validate_group_name(group)?;
        let p = t.partition(topic, token.partition)?;
        let (log_start, _) = p.offsets();
        let vis = visibility.as_millis().min(i64::MAX as u128 / 4) as i64;
        let (seq, expires) = {
            let mut meta = inner.meta.lock();
            let now = inner.clock.now_ms();
            let st = current_leases(&mut meta, topic, group, token.partition, log_start)
                .ok_or(StoreError::LeaseExpired)?;
            let mut rec = st.live_copy(&token, now, false)?;
            let expires = now.saturating_add(vis);
            rec.phase = Phase::Leased {
                nonce: token.nonce,
                expires,
            };
            let set = vec![(token.offset, rec)];
            let floor = st.floor;
            let seq = inner.record(
                &mut meta,
                Op::Lease {
                    topic: topic.to_string(),
                    group: group.to_string(),
                    partition: token.partition,
                    floor,
                    set,
                    dead: Vec::new(),
                },
            )?;
            (seq, expires)
        };
        let d = t.config.read().durability;
        inner.meta_durable(seq, d).await?;
        Ok(expires)
    }

    /// [`Store::reset_lease_start`] on the log store: journals a `LeaseReset` with the start
    /// clamped into `[log_start, high watermark]` (read under the metadata lock, so no lease
    /// call of the group interleaves).
    pub(super) async fn reset_lease_start(
        &self,
        topic: &str,
        partition: i32,
        group: &str,
        start: i64,
    ) -> StoreResult<i64> {
        let t = self.topic(topic)?;
        validate_group_name(group)?;
        let p = t.partition(topic, partition).map_err(|_| {
            StoreError::InvalidArgument(format!("topic {topic} has no partition {partition}"))
        })?;
        let (seq, start) = {
            let mut meta = self.meta.lock();
            let (log_start, hw) = p.offsets();
            let start = start.clamp(log_start, hw.max(log_start));
            let seq = self.record(
                &mut meta,
                Op::LeaseReset {
                    topic: topic.to_string(),
                    group: group.to_string(),
                    partition,
                    start,
                },
            )?;
            (seq, start)
        };
        let d = t.config.read().durability;
        self.meta_durable(seq, d).await?;
        Ok(start)
    }

    /// [`Store::delete_lease_group`] on the log store: journals a `DeleteLeaseGroup` when the
    /// group has a config or lease state on the topic.
    pub(super) async fn delete_lease_group(&self, topic: &str, group: &str) -> StoreResult<bool> {
        let t = self.topic(topic)?;
        validate_group_name(group)?;
        let seq = {
            let mut meta = self.meta.lock();
            if !meta.state.has_lease_group(topic, group) {
                return Ok(false);
            }
            self.record(
                &mut meta,
                Op::DeleteLeaseGroup {
                    topic: topic.to_string(),
                    group: group.to_string(),
                },
            )?
        };
        let d = t.config.read().durability;
        self.meta_durable(seq, d).await?;
        Ok(true)
    }

    /// [`Store::lease_floor`] on the log store: the group's done-floor moved over the
    /// finished records right above it, within `[log_start, high watermark]`.
    pub(super) async fn lease_floor(
        &self,
        topic: &str,
        partition: i32,
        group: &str,
    ) -> StoreResult<i64> {
        let t = self.topic(topic)?;
        validate_group_name(group)?;
        let p = t.partition(topic, partition)?;
        let mut meta = self.meta.lock();
        let (log_start, hw) = p.offsets();
        let Some(st) = current_leases(&mut meta, topic, group, partition, log_start) else {
            return Ok(log_start);
        };
        let mut floor = st.floor.clamp(log_start, hw.max(log_start));
        while floor < hw && st.recs.get(&floor).is_some_and(RecState::is_done) {
            floor += 1;
        }
        Ok(floor)
    }

    /// [`Store::lease_counts`] on the log store.
    pub(super) async fn lease_counts(
        &self,
        topic: &str,
        partition: i32,
        group: &str,
    ) -> StoreResult<LeaseCounts> {
        let inner = self;
        let t = inner.topic(topic)?;
        validate_group_name(group)?;
        let p = t.partition(topic, partition)?;
        let mut meta = inner.meta.lock();
        let now = inner.clock.now_ms();
        let committed = !group_config(&meta, topic, group).read_uncommitted;
        let (log_start, hw, lso) = p.stable_offsets();
        // A read-uncommitted group waits for no transaction: nothing is delayed for it by
        // the last stable offset (rule **leases_read_committed**).
        let lso = if committed { lso } else { hw };
        let empty = PartLeases {
            floor: log_start,
            ..PartLeases::default()
        };
        let st = current_leases(&mut meta, topic, group, partition, log_start).unwrap_or(&empty);
        let floor = st.floor.min(hw);
        let mut c = LeaseCounts {
            done: (floor - log_start).max(0) as u64,
            ..LeaseCounts::default()
        };
        // Below the stable bound (`lso`, the high watermark for read uncommitted); records
        // at or past it are delayed, control records done wherever they are.
        let stable = lso.max(floor);
        for (o, r) in st.recs.range(floor..stable) {
            let _ = o;
            match r.phase {
                Phase::Done { .. } => c.done += 1,
                Phase::Leased { expires, .. } if expires > now => c.leased += 1,
                Phase::Released { at } if at > now => c.delayed += 1,
                _ => {}
            }
        }
        for (o, _) in p.not_before_after(floor, now) {
            if o >= stable {
                break;
            }
            let counted = st.recs.get(&o).is_some_and(|r| r.is_busy(now));
            if !counted {
                c.delayed += 1;
            }
        }
        let skipped = p.skipped_records(floor, lso, hw, committed).unwrap_or_else(|e| {
            tracing::debug!(topic, partition, error = %e, "lease counts: cannot read batch headers");
            Default::default()
        });
        c.done += skipped.done;
        c.delayed += ((hw - stable).max(0) as u64).saturating_sub(skipped.control_past_stable);
        c.dead_lettered = st.dead.range(log_start..hw).count() as u64;
        let total = (hw - log_start).max(0) as u64;
        c.available = total.saturating_sub(c.done + c.leased + c.delayed);
        Ok(c)
    }
}
