//! The mock's admin API: fault rules, the call log and changes to the cluster over HTTP with
//! JSON, under `/mock/api/v1/` on every PD member's port, for tests that drive `tikv-mock`
//! from another process or language. Only loopback peers may use it; bad input is answered
//! with 400 and a JSON `{"error": ...}`. docs/mock-admin.md describes every endpoint.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use http::{Method, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde_json::{json, Map, Value};
use tonic::body::Body;
use tonic::transport::server::TcpConnectInfo;

use super::cluster::DataKind;
use super::fault::{region_error, region_error_kind, Call, Outcome, Reaction, Rule, RuleId};
use super::pd::PdGroup;
use super::pd_http::{hex_upper, region_json};
use super::stores::Stores;
use super::tikv::Node;
use crate::GrpcCode;

/// Where the admin API's paths start.
pub(crate) const PREFIX: &str = "/mock/api/v1/";
/// The largest request body read.
const MAX_BODY: usize = 64 << 10;
/// The longest delay a rule may ask for: one hour.
const MAX_DELAY_MS: u64 = 3_600_000;

/// A key given as text: hex with a `0x` prefix, else its UTF-8 bytes.
pub fn parse_key(text: &str) -> Result<Vec<u8>, String> {
    let Some(hex) = text.strip_prefix("0x") else {
        return Ok(text.as_bytes().to_vec());
    };
    let digit = |c: u8| char::from(c).to_digit(16);
    if hex.len() % 2 != 0 {
        return Err(format!("odd number of hex digits in {text}"));
    }
    hex.as_bytes()
        .chunks(2)
        .map(|pair| match (digit(pair[0]), digit(pair[1])) {
            (Some(hi), Some(lo)) => Ok((hi * 16 + lo) as u8),
            _ => Err(format!("bad hex in {text}")),
        })
        .collect()
}

/// A key as text that [`parse_key`] reads back: UTF-8 when it is, and does not look like hex,
/// else `0x`-hex.
fn key_text(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(text) if !text.starts_with("0x") => text.to_owned(),
        _ => format!("0x{}", hex_upper(key).to_ascii_lowercase()),
    }
}

/// A status and a JSON body.
pub(crate) type Answer = (StatusCode, Value);

fn fail(status: StatusCode, message: impl Into<String>) -> Answer {
    (status, json!({ "error": message.into() }))
}

fn bad(message: impl Into<String>) -> Answer {
    fail(StatusCode::BAD_REQUEST, message)
}

fn ok(body: Value) -> Answer {
    (StatusCode::OK, body)
}

/// Whether the admin API serves this peer: loopback addresses only.
fn admits(peer: Option<SocketAddr>) -> bool {
    peer.is_some_and(|p| match p {
        SocketAddr::V4(v4) => v4.ip().is_loopback(),
        SocketAddr::V6(v6) => {
            v6.ip().is_loopback() || v6.ip().to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    })
}

/// Serves the admin API for one cluster.
#[derive(Clone)]
pub(crate) struct Admin {
    node: Arc<Node>,
    pd: Arc<PdGroup>,
    /// Weak: the stores stop when the cluster is dropped, though PD's server may still run.
    stores: Weak<Stores>,
}

impl Admin {
    pub(crate) fn new(node: Arc<Node>, pd: Arc<PdGroup>, stores: &Arc<Stores>) -> Self {
        Admin {
            node,
            pd,
            stores: Arc::downgrade(stores),
        }
    }

    /// Answers a request whose path starts with [`PREFIX`].
    pub(crate) async fn serve(&self, request: http::Request<Body>) -> Answer {
        let peer = request
            .extensions()
            .get::<TcpConnectInfo>()
            .and_then(TcpConnectInfo::remote_addr);
        if !admits(peer) {
            return fail(
                StatusCode::FORBIDDEN,
                "the admin API serves loopback clients only",
            );
        }
        let (parts, body) = request.into_parts();
        let body = match Limited::new(body, MAX_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                return fail(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("cannot read the body (at most {MAX_BODY} bytes): {e}"),
                )
            }
        };
        let path = parts.uri.path().strip_prefix(PREFIX).unwrap_or_default();
        self.route(&parts.method, path, parts.uri.query(), &body)
            .await
    }

    async fn route(&self, method: &Method, path: &str, query: Option<&str>, body: &[u8]) -> Answer {
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        let allowed: &[Method] = match segments.as_slice() {
            ["rules"] => match *method {
                Method::GET => return ok(self.rules()),
                Method::POST => return self.add_rule(body),
                Method::DELETE => {
                    self.node.faults.clear();
                    return ok(json!({}));
                }
                _ => &[Method::GET, Method::POST, Method::DELETE],
            },
            ["rules", id] if method == Method::DELETE => return self.remove_rule(id),
            ["rules", _] => &[Method::DELETE],
            ["calls"] => match *method {
                Method::GET => return self.calls(query),
                Method::DELETE => {
                    self.node.faults.clear_calls();
                    return ok(json!({}));
                }
                _ => &[Method::GET, Method::DELETE],
            },
            ["split"] if method == Method::POST => return self.split(body),
            ["transfer-leader"] if method == Method::POST => return self.transfer_leader(body),
            ["stores", id, action @ ("stop" | "start")] if method == Method::POST => {
                return self.store_action(id, action).await
            }
            ["stores", id, "pd-partition"]
                if *method == Method::POST || *method == Method::DELETE =>
            {
                return self.pd_partition(id, *method == Method::POST)
            }
            ["pd", "transfer-leader"] if method == Method::POST => {
                return self.transfer_pd_leader(body)
            }
            ["split"] | ["transfer-leader"] | ["pd", "transfer-leader"] => &[Method::POST],
            ["stores", _, "stop" | "start"] => &[Method::POST],
            ["stores", _, "pd-partition"] => &[Method::POST, Method::DELETE],
            _ => {
                return fail(
                    StatusCode::NOT_FOUND,
                    format!("no such path: {PREFIX}{path}"),
                )
            }
        };
        let allowed: Vec<&str> = allowed.iter().map(Method::as_str).collect();
        fail(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed here; use {}", allowed.join(", ")),
        )
    }

    fn rules(&self) -> Value {
        let rules: Vec<Value> = self
            .node
            .faults
            .rules()
            .into_iter()
            .map(|(id, rule, fired)| {
                let mut out = rule_json(&rule);
                out.insert("id".into(), id.0.into());
                out.insert("fired".into(), fired.into());
                Value::Object(out)
            })
            .collect();
        Value::Array(rules)
    }

    fn add_rule(&self, body: &[u8]) -> Answer {
        match Fields::parse(body).and_then(rule_from_json) {
            Ok(rule) => ok(json!({ "id": self.node.faults.add(rule).0 })),
            Err(message) => bad(message),
        }
    }

    fn remove_rule(&self, id: &str) -> Answer {
        let Ok(id) = id.parse::<u64>() else {
            return bad(format!("not a rule id: {id}"));
        };
        if self.node.faults.remove(RuleId(id)) {
            ok(json!({}))
        } else {
            fail(StatusCode::NOT_FOUND, format!("no rule {id}"))
        }
    }

    fn calls(&self, query: Option<&str>) -> Answer {
        let mut method = None;
        for pair in query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            match pair.split_once('=') {
                Some(("method", name)) => method = Some(name),
                _ => return bad(format!("unknown query parameter {pair}; only method=NAME")),
            }
        }
        let calls: Vec<Value> = self
            .node
            .faults
            .calls()
            .iter()
            .filter(|c| method.is_none_or(|m| c.method == m))
            .map(call_json)
            .collect();
        ok(Value::Array(calls))
    }

    fn split(&self, body: &[u8]) -> Answer {
        let parsed = Fields::parse(body).and_then(|mut f| {
            let key = parse_key(&f.string("key")?.ok_or("key is required")?)?;
            let kind = match f.string("kind")?.as_deref() {
                Some("raw") => DataKind::Raw,
                Some("txn") => DataKind::Txn,
                Some(other) => return Err(format!("kind must be raw or txn, not {other}")),
                None => return Err("kind is required: raw or txn".into()),
            };
            f.finish()?;
            Ok((key, kind))
        });
        let (key, kind) = match parsed {
            Ok(parsed) => parsed,
            Err(message) => return bad(message),
        };
        let cluster = &self.node.cluster;
        let region = cluster
            .split(&cluster.internal_key(&key, kind))
            .and_then(|r| cluster.meta().region_by_id(r.id).cloned());
        ok(json!({ "region": region.as_ref().map(region_json) }))
    }

    fn transfer_leader(&self, body: &[u8]) -> Answer {
        let parsed = Fields::parse(body).and_then(|mut f| {
            let region = f.u64("region")?.ok_or("region is required")?;
            let store = f.u64("store")?.ok_or("store is required")?;
            f.finish()?;
            Ok((region, store))
        });
        match parsed.and_then(|(region, store)| self.node.transfer_leader(region, store)) {
            Ok(()) => ok(json!({})),
            Err(message) => bad(message),
        }
    }

    async fn store_action(&self, id: &str, action: &str) -> Answer {
        let Ok(id) = id.parse::<u64>() else {
            return bad(format!("not a store id: {id}"));
        };
        let Some(stores) = self.stores.upgrade() else {
            return fail(
                StatusCode::SERVICE_UNAVAILABLE,
                "the cluster is shutting down",
            );
        };
        if !stores.ids().contains(&id) {
            return fail(StatusCode::NOT_FOUND, format!("no store {id}"));
        }
        if action == "stop" {
            return ok(json!({ "stopped": stores.stop(id) }));
        }
        match stores.start_again(id).await {
            Ok(()) => ok(json!({})),
            // Its address is taken: most likely by the store itself, still running.
            Err(e) => fail(
                StatusCode::CONFLICT,
                format!("cannot start store {id}: {e}"),
            ),
        }
    }

    /// Cuts a store off from PD (`partitioned`) or heals that partition.
    fn pd_partition(&self, id: &str, partitioned: bool) -> Answer {
        let Ok(id) = id.parse::<u64>() else {
            return bad(format!("not a store id: {id}"));
        };
        if self.node.cut_off_from_pd(id, partitioned) {
            ok(json!({ "partitioned": partitioned }))
        } else {
            fail(StatusCode::NOT_FOUND, format!("no store {id}"))
        }
    }

    fn transfer_pd_leader(&self, body: &[u8]) -> Answer {
        let parsed = Fields::parse(body).and_then(|mut f| {
            let to = f.u64("to")?.ok_or("to is required")?;
            f.finish()?;
            usize::try_from(to).map_err(|_| format!("no PD member {to}"))
        });
        match parsed.and_then(|to| self.pd.transfer(to)) {
            Ok(()) => ok(json!({ "leader": self.pd.leader() })),
            Err(message) => bad(message),
        }
    }
}

/// A JSON object's fields, taken one by one; whatever is left over is an error.
struct Fields(Map<String, Value>);

impl Fields {
    fn parse(body: &[u8]) -> Result<Fields, String> {
        match serde_json::from_slice(body) {
            Ok(Value::Object(map)) => Ok(Fields(map)),
            Ok(_) => Err("expected a JSON object".into()),
            Err(e) => Err(format!("invalid JSON: {e}")),
        }
    }

    /// The field, absent when missing or null.
    fn take(&mut self, key: &str) -> Option<Value> {
        self.0.remove(key).filter(|v| !v.is_null())
    }

    fn u64(&mut self, key: &str) -> Result<Option<u64>, String> {
        self.take(key)
            .map(|v| {
                v.as_u64()
                    .ok_or(format!("{key}: expected a non-negative integer, got {v}"))
            })
            .transpose()
    }

    fn string(&mut self, key: &str) -> Result<Option<String>, String> {
        self.take(key)
            .map(|v| match v {
                Value::String(s) => Ok(s),
                other => Err(format!("{key}: expected a string, got {other}")),
            })
            .transpose()
    }

    /// A flag: true sets it, false or absent does not.
    fn flag(&mut self, key: &str) -> Result<bool, String> {
        match self.take(key) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(b),
            Some(other) => Err(format!("{key}: expected true or false, got {other}")),
        }
    }

    fn finish(self) -> Result<(), String> {
        match self.0.keys().next() {
            Some(key) => Err(format!("unknown field {key}")),
            None => Ok(()),
        }
    }
}

fn rule_from_json(mut f: Fields) -> Result<Rule, String> {
    let method = f.string("method")?.unwrap_or_else(|| "*".into());
    if method.is_empty() {
        return Err("method: give a gRPC method name, or * for every method".into());
    }
    let mut rule = Rule::on(method);
    if let Some(store) = f.u64("store")? {
        rule = rule.store(store);
    }
    let region = f.u64("region")?;
    if let Some(region) = region {
        rule = rule.region(region);
    }
    if let Some(prefix) = f.string("key_prefix")? {
        rule = rule.key_prefix(parse_key(&prefix)?);
    }
    if let Some(n) = f.u64("nth")? {
        if n == 0 {
            return Err("nth counts from 1".into());
        }
        rule = rule.nth(n);
    }
    if let Some(p) = f.take("probability") {
        match p.as_f64() {
            Some(p) if (0.0..=1.0).contains(&p) => rule = rule.probability(p),
            _ => return Err(format!("probability: expected a number in [0, 1], got {p}")),
        }
    }
    if let Some(times) = f.u64("times")? {
        rule = rule.times(times);
    }
    let mut reactions = Vec::new();
    if let Some(kind) = f.string("region_error")? {
        let error = region_error(&kind, region.unwrap_or(0)).ok_or(format!(
            "region_error: unknown kind {kind}; one of {}",
            super::fault::REGION_ERROR_KINDS.join(", ")
        ))?;
        reactions.push(Reaction::RegionError(Box::new(error)));
    }
    if let Some(status) = f.take("status") {
        reactions.push(status_from_json(status)?);
    }
    let mut delay = |key: &str| -> Result<Option<Duration>, String> {
        match f.u64(key)? {
            Some(ms) if ms > MAX_DELAY_MS => Err(format!("{key}: at most {MAX_DELAY_MS} ms")),
            other => Ok(other.map(Duration::from_millis)),
        }
    };
    if let Some(d) = delay("delay_ms")? {
        reactions.push(Reaction::Delay(d));
    }
    if let Some(d) = delay("delay_reply_ms")? {
        reactions.push(Reaction::DelayReply(d));
    }
    if f.flag("drop_connection")? {
        reactions.push(Reaction::DropConnection);
    }
    if f.flag("lose_reply")? {
        reactions.push(Reaction::LoseReply);
    }
    if f.flag("no_region")? {
        reactions.push(Reaction::NoRegion);
    }
    f.finish()?;
    match <[Reaction; 1]>::try_from(reactions) {
        Ok([reaction]) => Ok(rule.then(reaction)),
        Err(_) => Err(
            "give exactly one reaction: region_error, status, delay_ms, \
             delay_reply_ms, drop_connection, lose_reply or no_region"
                .into(),
        ),
    }
}

fn status_from_json(status: Value) -> Result<Reaction, String> {
    let Value::Object(map) = status else {
        return Err(format!(
            "status: expected {{\"code\", \"message\"}}, got {status}"
        ));
    };
    let mut f = Fields(map);
    let code = f.take("code").ok_or("status.code is required")?;
    let code = grpc_code(&code).ok_or(format!(
        "status.code: expected a gRPC code from 1 to 16 or its name, got {code}"
    ))?;
    let message = f.string("message")?.unwrap_or_default();
    f.finish().map_err(|e| format!("status: {e}"))?;
    Ok(Reaction::Status { code, message })
}

/// A gRPC error code by number (1 to 16) or by name, in any case, with or without
/// underscores (`Unavailable`, `UNAVAILABLE`, `deadline_exceeded`).
fn grpc_code(v: &Value) -> Option<GrpcCode> {
    let code = |n: i32| GrpcCode::from(tonic::Code::from_i32(n));
    if let Some(n) = v.as_u64() {
        return (1..=16).contains(&n).then(|| code(n as i32));
    }
    let wanted: String = v.as_str()?.replace('_', "").to_ascii_lowercase();
    (1..=16)
        .map(code)
        .find(|c| format!("{c:?}").to_ascii_lowercase() == wanted)
}

fn rule_json(rule: &Rule) -> Map<String, Value> {
    let c = &rule.condition;
    let mut out = Map::new();
    out.insert("method".into(), c.method.as_deref().unwrap_or("*").into());
    let optional = [
        ("store", c.store.map(Value::from)),
        ("region", c.region.map(Value::from)),
        (
            "key_prefix",
            c.key_prefix.as_deref().map(|k| key_text(k).into()),
        ),
        ("nth", c.nth.map(Value::from)),
        ("probability", c.probability.map(Value::from)),
        ("times", c.times.map(Value::from)),
    ];
    out.extend(
        optional
            .into_iter()
            .filter_map(|(key, v)| Some((key.to_owned(), v?))),
    );
    let (key, value) = match &rule.reaction {
        Reaction::RegionError(e) => ("region_error", region_error_kind(e).into()),
        Reaction::Status { code, message } => (
            "status",
            json!({ "code": format!("{code:?}"), "message": message }),
        ),
        Reaction::Delay(d) => ("delay_ms", millis(*d)),
        Reaction::DelayReply(d) => ("delay_reply_ms", millis(*d)),
        Reaction::DropConnection => ("drop_connection", true.into()),
        Reaction::LoseReply => ("lose_reply", true.into()),
        Reaction::NoRegion => ("no_region", true.into()),
    };
    out.insert(key.into(), value);
    out
}

fn millis(d: Duration) -> Value {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).into()
}

fn call_json(call: &Call) -> Value {
    let (outcome, detail) = match &call.outcome {
        Outcome::Ok => ("Ok", None),
        Outcome::RegionError(kind) => ("RegionError", Some(("region_error", (*kind).into()))),
        Outcome::Status(code) => ("Status", Some(("status", format!("{code:?}").into()))),
        Outcome::Dropped => ("Dropped", None),
        Outcome::ReplyLost => ("ReplyLost", None),
    };
    let l = &call.labels;
    let mut out = json!({
        "method": call.method,
        "store": call.store,
        "region": call.region,
        "batched": call.batched,
        "outcome": outcome,
        "labels": {
            "request_source": l.request_source,
            "resource_group": l.resource_group,
            "txn_source": l.txn_source,
            "priority": l.priority,
            "isolation_level": l.isolation_level,
            "is_retry_request": l.is_retry_request,
            "replica_read": l.replica_read,
            "stale_read": l.stale_read,
        },
    });
    if let (Some((key, value)), Some(map)) = (detail, out.as_object_mut()) {
        map.insert(key.into(), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_utf8_or_hex_and_never_panic() {
        assert_eq!(parse_key("abc").unwrap(), b"abc");
        assert_eq!(parse_key("0x00fF").unwrap(), vec![0, 255]);
        assert!(parse_key("0xabc").is_err(), "odd length");
        assert!(parse_key("0xzz").is_err());
        assert!(parse_key("0x€a").is_err(), "non-ASCII in hex");
        for key in [&b"k"[..], b"0xk", &[0xff, 0]] {
            assert_eq!(parse_key(&key_text(key)).unwrap(), key);
        }
    }

    #[test]
    fn only_loopback_peers_are_admitted() {
        for peer in [
            "127.0.0.1:1",
            "127.8.9.1:2",
            "[::1]:3",
            "[::ffff:127.0.0.1]:4",
        ] {
            assert!(admits(Some(peer.parse().unwrap())), "{peer}");
        }
        for peer in [
            "10.0.0.1:1",
            "192.168.1.2:2",
            "[2001:db8::1]:3",
            "0.0.0.0:4",
        ] {
            assert!(!admits(Some(peer.parse().unwrap())), "{peer}");
        }
        assert!(!admits(None));
    }

    fn parse(text: &str) -> Result<Rule, String> {
        Fields::parse(text.as_bytes()).and_then(rule_from_json)
    }

    #[test]
    fn rules_parse_from_json_and_render_back() {
        let rule = parse(
            r#"{"method":"RawGet","store":1,"region":2,"key_prefix":"0x6b","nth":3,
                "times":1,"region_error":"NotLeader"}"#,
        )
        .unwrap();
        let json = Value::Object(rule_json(&rule));
        assert_eq!(
            json,
            json!({"method":"RawGet","store":1,"region":2,"key_prefix":"k","nth":3,
                   "times":1,"region_error":"NotLeader"})
        );
        let again = parse(&json.to_string()).unwrap();
        assert_eq!(Value::Object(rule_json(&again)), json);
        let status = parse(r#"{"status":{"code":"DEADLINE_EXCEEDED","message":"m"}}"#).unwrap();
        assert!(matches!(
            status.reaction,
            Reaction::Status {
                code: GrpcCode::DeadlineExceeded,
                ..
            }
        ));
        assert!(matches!(
            parse(r#"{"status":{"code":14}}"#).unwrap().reaction,
            Reaction::Status {
                code: GrpcCode::Unavailable,
                ..
            }
        ));
        assert!(matches!(
            parse(r#"{"delay_reply_ms":5}"#).unwrap().reaction,
            Reaction::DelayReply(d) if d == Duration::from_millis(5)
        ));
    }

    #[test]
    fn bad_rules_are_refused_with_a_reason() {
        for (text, reason) in [
            ("[]", "JSON object"),
            ("{", "invalid JSON"),
            (r#"{"method":"RawGet"}"#, "exactly one reaction"),
            (
                r#"{"lose_reply":true,"drop_connection":true}"#,
                "exactly one",
            ),
            (r#"{"region_error":"Nope"}"#, "unknown kind"),
            (r#"{"lose_reply":true,"colour":1}"#, "unknown field colour"),
            (r#"{"lose_reply":"yes"}"#, "true or false"),
            (r#"{"lose_reply":true,"nth":0}"#, "from 1"),
            (r#"{"lose_reply":true,"nth":-1}"#, "non-negative"),
            (r#"{"lose_reply":true,"probability":2}"#, "[0, 1]"),
            (r#"{"lose_reply":true,"key_prefix":"0xqq"}"#, "bad hex"),
            (r#"{"delay_ms":99999999999}"#, "at most"),
            (r#"{"status":{"code":0}}"#, "status.code"),
            (r#"{"status":{"code":"Nope"}}"#, "status.code"),
            (r#"{"status":7}"#, "status"),
            (r#"{"status":{"code":14,"extra":1}}"#, "unknown field extra"),
            (r#"{"method":"","lose_reply":true}"#, "method"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(reason), "{text}: {err}");
        }
    }
}
