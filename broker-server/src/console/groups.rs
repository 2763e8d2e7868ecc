//! Consumer groups: `GET /api/v1/groups` (every group with its state and total lag),
//! `GET /api/v1/groups/{group}` (members, assignments, committed offsets and lag per
//! partition) and `POST /api/v1/groups/{group}/reset-offsets` (a dry-run plan, or the reset
//! itself, by the same function as `broker admin groups reset-offsets`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::Json;
use broker_api::validate_group_name;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{json_body, valid_name, ApiError, ApiResult, Console, MAX_ITEMS};
use crate::admin::kafka::ResetTarget;
use crate::backlog;
use crate::kafka::groups_view::MemberView;

/// A group in the list.
#[derive(Debug, Serialize)]
pub struct GroupSummary {
    pub group: String,
    /// The coordinator's state; `Empty` for a group known only by its committed offsets.
    pub state: String,
    pub protocol_type: String,
    pub members: usize,
    /// Topics it has committed offsets on or is assigned.
    pub topics: Vec<String>,
    /// Total lag of its committed offsets.
    pub lag: i64,
}

/// Every group with committed offsets or members, sorted by name.
pub async fn list(State(c): State<Arc<Console>>) -> ApiResult<Json<Vec<GroupSummary>>> {
    let stored = c
        .store
        .list_consumer_groups()
        .await
        .map_err(|e| ApiError::store("listing consumer groups", e))?;
    let live: BTreeMap<String, (String, &'static str)> = c
        .kafka
        .live_groups()
        .into_iter()
        .map(|g| (g.group, (g.protocol_type, g.state)))
        .collect();
    let names: BTreeSet<String> = stored.into_iter().chain(live.keys().cloned()).collect();
    let mut out = Vec::with_capacity(names.len());
    for group in names.into_iter().take(MAX_ITEMS) {
        let lags = backlog::group_lag(c.store.as_ref(), &group)
            .await
            .map_err(|e| ApiError::store(&format!("group {group:?}"), e))?;
        let view = c.kafka.group_view(&group);
        let mut topics: BTreeSet<String> = lags.iter().map(|l| l.topic.clone()).collect();
        for m in view.iter().flat_map(|v| &v.members) {
            topics.extend(m.assignments.iter().map(|(t, _)| t.clone()));
        }
        let (protocol_type, state) = match live.get(&group) {
            Some((pt, st)) => (pt.clone(), st.to_string()),
            None => ("consumer".to_string(), "Empty".to_string()),
        };
        out.push(GroupSummary {
            members: view.map_or(0, |v| v.members.len()),
            lag: lags.iter().filter_map(|l| l.lag).sum(),
            topics: topics.into_iter().collect(),
            group,
            state,
            protocol_type,
        });
    }
    Ok(Json(out))
}

/// A partition of a group: its commit (if any), offsets, lag and the member it is
/// assigned to (if any).
#[derive(Debug, Serialize)]
pub struct GroupPartition {
    pub topic: String,
    pub partition: i32,
    /// `None` for an assigned partition without a commit yet.
    pub committed: Option<i64>,
    /// `None` when the topic no longer exists.
    pub log_start: Option<i64>,
    pub end: Option<i64>,
    pub lag: Option<i64>,
    pub member: Option<String>,
}

/// `GET /api/v1/groups/{group}`.
#[derive(Debug, Serialize)]
pub struct GroupDetail {
    pub group: String,
    pub state: String,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberView>,
    pub partitions: Vec<GroupPartition>,
    pub lag: i64,
}

/// One group; 404 when it has neither members nor committed offsets.
pub async fn describe(
    State(c): State<Arc<Console>>,
    Path(group): Path<String>,
) -> ApiResult<Json<GroupDetail>> {
    check_group(&group)?;
    let what = format!("group {group:?}");
    let lags = backlog::group_lag(c.store.as_ref(), &group)
        .await
        .map_err(|e| ApiError::store(&what, e))?;
    let view = c.kafka.group_view(&group);
    if view.is_none() && lags.is_empty() {
        return Err(ApiError::not_found(format!(
            "group {group:?} does not exist (no members and no committed offsets)"
        )));
    }
    let mut owner: BTreeMap<(String, i32), String> = BTreeMap::new();
    for m in view.iter().flat_map(|v| &v.members) {
        for (t, ps) in &m.assignments {
            for p in ps {
                owner.insert((t.clone(), *p), m.member_id.clone());
            }
        }
    }
    let mut partitions: Vec<GroupPartition> = Vec::new();
    for l in lags {
        let member = owner.remove(&(l.topic.clone(), l.partition));
        partitions.push(GroupPartition {
            committed: Some(l.committed),
            log_start: l.log_start,
            end: l.end,
            lag: l.lag,
            topic: l.topic,
            partition: l.partition,
            member,
        });
    }
    // Assigned partitions without a commit yet.
    for ((topic, partition), member) in owner {
        let o = c.store.partition_offsets(&topic, partition).await.ok();
        partitions.push(GroupPartition {
            topic,
            partition,
            committed: None,
            log_start: o.map(|o| o.log_start_offset),
            end: o.map(|o| o.high_watermark),
            lag: None,
            member: Some(member),
        });
    }
    partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    let lag = partitions.iter().filter_map(|p| p.lag).sum();
    let (state, protocol_type, protocol, members) = match view {
        Some(v) => (v.state.to_string(), v.protocol_type, v.protocol, v.members),
        None => ("Empty".into(), "consumer".into(), String::new(), Vec::new()),
    };
    Ok(Json(GroupDetail {
        group,
        state,
        protocol_type,
        protocol,
        members,
        partitions,
        lag,
    }))
}

/// The body of `POST /api/v1/groups/{group}/reset-offsets`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reset {
    pub topic: String,
    /// `earliest`, `latest`, `timestamp` (with `timestamp`) or `offset` (with `offset`).
    pub to: String,
    pub timestamp: Option<i64>,
    pub offset: Option<i64>,
    /// Commit the plan; without it (the default) the answer is only the plan (a dry run).
    #[serde(default)]
    pub execute: bool,
}

/// A 400 naming the group when the name is not valid.
fn check_group(group: &str) -> ApiResult<()> {
    valid_name("group", group, validate_group_name)
}

/// Plans, and with `execute` commits, new offsets of the group on one topic; 409 while the
/// group has members, 404 for an unknown topic.
pub async fn reset_offsets(
    State(c): State<Arc<Console>>,
    Path(group): Path<String>,
    body: Result<Json<Reset>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    check_group(&group)?;
    let req = json_body(body)?;
    let target = match (req.to.as_str(), req.timestamp, req.offset) {
        ("earliest", None, None) => ResetTarget::Earliest,
        ("latest", None, None) => ResetTarget::Latest,
        ("timestamp", Some(ms), None) => ResetTarget::Timestamp(ms),
        ("offset", None, Some(n)) if n >= 0 => ResetTarget::Offset(n),
        ("offset", None, Some(n)) => {
            return Err(ApiError::bad_request(format!(
                "offset {n} is not valid: give 0 or more (it is clamped to each partition's range)"
            )))
        }
        (to, ..) => {
            return Err(ApiError::bad_request(format!(
                "\"to\": {to:?} is not valid: give \"earliest\", \"latest\", \"timestamp\" with \
                 \"timestamp\": MS, or \"offset\" with \"offset\": N (and nothing else)"
            )))
        }
    };
    let out = c
        .admin()
        .groups_reset_offsets(&group, &req.topic, target, req.execute)
        .await
        .map_err(ApiError::admin)?;
    Ok(Json(out.json))
}
