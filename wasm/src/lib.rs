//! JavaScript bindings for tikv-client, built with wasm-bindgen for browsers, Node and edge
//! workers: the Rust `RawClient` and `TransactionClient` over gRPC-web.
//!
//! Every method returns a Promise. Keys and values are `Uint8Array`s or strings (strings are
//! sent as UTF-8); values come back as `Uint8Array`. Errors are JS `Error`s with a stable `code`
//! (`WriteConflict`, `KeyExists`, `Deadlock`, `LockWaitTimeout`, `CommitUndetermined`,
//! `WriteUndetermined`, `PartialWrite`, `TransactionRolledBack`, `TxnAbortedByGc`,
//! `Timeout`, `Unavailable`, `InvalidArgument`, `Unsupported`, `Unknown`).
//!
//! The crate is empty on native targets so that `cargo build --workspace` stays native-clean.

#![cfg(target_arch = "wasm32")]
#![deny(missing_docs)]

use std::rc::Rc;

use futures::lock::Mutex;
use js_sys::{Array, Object, Promise, Reflect, Uint8Array};
use tikv_client::transport::UrlTemplate;
use tikv_client::{Config, Error, Key, TransactionOptions};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

/// The version of the bindings (the crate version).
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}

/// The stable `code` of an error, for JavaScript callers to branch on.
fn code(e: &Error) -> &'static str {
    match e {
        Error::WriteConflict(_) => "WriteConflict",
        Error::KeyExists(_) => "KeyExists",
        Error::Deadlock { .. } => "Deadlock",
        Error::LockWaitTimeout(_) => "LockWaitTimeout",
        Error::CommitUndetermined(_) => "CommitUndetermined",
        Error::WriteUndetermined { .. } => "WriteUndetermined",
        Error::PartialWrite { .. } => "PartialWrite",
        Error::TransactionRolledBack { .. } => "TransactionRolledBack",
        Error::TxnAbortedByGc { .. } => "TxnAbortedByGc",
        Error::Timeout { .. } | Error::BackoffExhausted { .. } | Error::DeadlineExceeded { .. } => {
            "Timeout"
        }
        Error::Transport(_) | Error::Pd(_) => "Unavailable",
        Error::Grpc { code, .. } if *code == tikv_client::GrpcCode::Unavailable => "Unavailable",
        Error::InvalidArgument(_) | Error::InvalidConfig(_) => "InvalidArgument",
        Error::Unsupported(_) => "Unsupported",
        _ => "Unknown",
    }
}

/// Our error as a JS `Error` with a `code` property.
fn js_error(e: Error) -> JsValue {
    let err = js_sys::Error::new(&e.to_string());
    // Setting a property on a fresh Error object cannot fail.
    let _ = Reflect::set(&err, &"code".into(), &code(&e).into());
    err.into()
}

fn invalid(message: &str) -> JsValue {
    js_error(Error::InvalidArgument(message.to_owned()))
}

/// Bytes from a `Uint8Array` or a string.
fn bytes(v: &JsValue) -> Result<Vec<u8>, JsValue> {
    if let Some(s) = v.as_string() {
        return Ok(s.into_bytes());
    }
    if v.is_instance_of::<Uint8Array>() {
        return Ok(Uint8Array::new(v).to_vec());
    }
    Err(invalid("keys and values must be strings or Uint8Arrays"))
}

fn js_bytes(b: &[u8]) -> JsValue {
    Uint8Array::from(b).into()
}

/// `{ key, value }` objects for scan results.
fn pairs(found: Vec<tikv_client::KvPair>) -> JsValue {
    let out = Array::new();
    for pair in found {
        let o = Object::new();
        let _ = Reflect::set(&o, &"key".into(), &js_bytes(pair.key.as_ref()));
        let _ = Reflect::set(&o, &"value".into(), &js_bytes(&pair.value));
        out.push(&o);
    }
    out.into()
}

#[wasm_bindgen(typescript_custom_section)]
const OPTION_TYPES: &'static str = r#"
/** Options of `RawClient.connect` and `TransactionClient.connect`. */
export interface ConnectOptions {
  /** Where gRPC-web requests go: `{addr}`, `{host}` and `{port}` stand for the server's
   * address, e.g. `https://proxy.example.com/tikv/{host}/{port}` behind one proxy. Default:
   * `http://host:port` of each server. */
  urlTemplate?: string;
  /** Per-request deadline in milliseconds (default 30000). */
  timeoutMs?: number;
  /** An API v2 keyspace to work in. */
  keyspace?: string;
}

/** Options of `TransactionClient.begin`. */
export interface BeginOptions {
  /** Lock keys as they are written (default false: optimistic). */
  pessimistic?: boolean;
  /** Commit with async commit when the transaction is small enough. */
  asyncCommit?: boolean;
  /** Commit in one phase when every key is in one region. */
  tryOnePc?: boolean;
}
"#;

/// A property of an options object: `None` when the object or the property is absent.
fn option(options: &JsValue, name: &str) -> Result<Option<JsValue>, JsValue> {
    if options.is_undefined() || options.is_null() {
        return Ok(None);
    }
    if !options.is_object() {
        return Err(invalid("options must be an object"));
    }
    let value = Reflect::get(options, &name.into())?;
    Ok((!value.is_undefined()).then_some(value))
}

fn bool_option(options: &JsValue, name: &str) -> Result<bool, JsValue> {
    match option(options, name)? {
        None => Ok(false),
        Some(v) => v
            .as_bool()
            .ok_or_else(|| invalid(&format!("option {name} must be a boolean"))),
    }
}

/// The client configuration from `ConnectOptions`.
fn config(options: &JsValue) -> Result<Config, JsValue> {
    let mut config = Config::default();
    if let Some(t) = option(options, "urlTemplate")? {
        let template = t
            .as_string()
            .ok_or_else(|| invalid("urlTemplate must be a string"))?;
        config = config.with_address_mapper(UrlTemplate::new(template));
    }
    if let Some(ms) = option(options, "timeoutMs")? {
        // JavaScript timers cannot wait longer than 2^31 - 1 ms.
        let ms = ms
            .as_f64()
            .filter(|ms| ms.is_finite() && *ms > 0.0 && *ms <= f64::from(i32::MAX))
            .ok_or_else(|| invalid("timeoutMs must be a positive number of at most 2147483647"))?;
        config = config.with_timeout(std::time::Duration::from_millis(ms as u64));
    }
    if let Some(name) = option(options, "keyspace")? {
        let name = name
            .as_string()
            .ok_or_else(|| invalid("keyspace must be a string"))?;
        config = config.with_keyspace(name);
    }
    config.validate().map_err(js_error)?;
    Ok(config)
}

fn endpoints(pd: &Array) -> Result<Vec<String>, JsValue> {
    pd.iter()
        .map(|v| {
            v.as_string()
                .ok_or_else(|| invalid("PD endpoints must be strings"))
        })
        .collect()
}

/// A raw key-value client.
#[wasm_bindgen]
pub struct RawClient {
    inner: tikv_client::RawClient,
}

#[wasm_bindgen]
impl RawClient {
    /// Connects through PD (`["host:port", ...]` or URLs); resolves to a `RawClient`.
    #[wasm_bindgen(unchecked_return_type = "Promise<RawClient>")]
    pub fn connect(
        #[wasm_bindgen(unchecked_param_type = "string[]")] pd: Array,
        #[wasm_bindgen(unchecked_optional_param_type = "ConnectOptions")] options: Option<Object>,
    ) -> Promise {
        future_to_promise(async move {
            let config = config(&options.map_or(JsValue::UNDEFINED, Into::into))?;
            let inner = tikv_client::RawClient::new_with_config(endpoints(&pd)?, config)
                .await
                .map_err(js_error)?;
            Ok(RawClient { inner }.into())
        })
    }

    /// The value of `key` as a `Uint8Array`, or `undefined`.
    #[wasm_bindgen(unchecked_return_type = "Promise<Uint8Array | undefined>")]
    pub fn get(&self, key: JsValue) -> Promise {
        let client = self.inner.clone();
        future_to_promise(async move {
            let value = client.get(bytes(&key)?).await.map_err(js_error)?;
            Ok(value.map_or(JsValue::UNDEFINED, |v| js_bytes(&v)))
        })
    }

    /// Sets `key` to `value`, for `ttl_secs` seconds if given (needs a TTL-enabled cluster).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn put(&self, key: JsValue, value: JsValue, ttl_secs: Option<u32>) -> Promise {
        let client = self.inner.clone();
        future_to_promise(async move {
            let (key, value) = (bytes(&key)?, bytes(&value)?);
            client
                .put_with_ttl(key, value, u64::from(ttl_secs.unwrap_or(0)))
                .await
                .map_err(js_error)?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// One entry per key, in order: its value as a `Uint8Array`, or `undefined`.
    #[wasm_bindgen(js_name = batchGet, unchecked_return_type = "Promise<Array<Uint8Array | undefined>>")]
    pub fn batch_get(&self, keys: Array) -> Promise {
        let client = self.inner.clone();
        future_to_promise(async move {
            let keys: Vec<Vec<u8>> = keys.iter().map(|k| bytes(&k)).collect::<Result<_, _>>()?;
            let values = client.batch_get_values(keys).await.map_err(js_error)?;
            let out = Array::new();
            for v in values {
                out.push(&v.map_or(JsValue::UNDEFINED, |v| js_bytes(&v)));
            }
            Ok(out.into())
        })
    }

    /// Writes `[key, value]` pairs, grouped by region.
    #[wasm_bindgen(js_name = batchPut, unchecked_return_type = "Promise<void>")]
    pub fn batch_put(&self, pairs: Array) -> Promise {
        let client = self.inner.clone();
        future_to_promise(async move {
            let mut kvs = Vec::new();
            for pair in pairs.iter() {
                let pair = Array::from(&pair);
                kvs.push(tikv_client::KvPair::new(
                    bytes(&pair.get(0))?,
                    bytes(&pair.get(1))?,
                ));
            }
            client.batch_put(kvs).await.map_err(js_error)?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Deletes many keys.
    #[wasm_bindgen(js_name = batchDelete, unchecked_return_type = "Promise<void>")]
    pub fn batch_delete(&self, keys: Array) -> Promise {
        let client = self.inner.clone();
        future_to_promise(async move {
            let keys: Vec<Vec<u8>> = keys.iter().map(|k| bytes(&k)).collect::<Result<_, _>>()?;
            client.batch_delete(keys).await.map_err(js_error)?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// The remaining TTL of `key` in seconds (0: no TTL), or `undefined` if absent.
    #[wasm_bindgen(unchecked_return_type = "Promise<number | undefined>")]
    pub fn ttl(&self, key: JsValue) -> Promise {
        let client = self.inner.clone();
        future_to_promise(async move {
            let ttl = client
                .get_key_ttl_secs(bytes(&key)?)
                .await
                .map_err(js_error)?;
            Ok(ttl.map_or(JsValue::UNDEFINED, |t| JsValue::from(t as f64)))
        })
    }

    /// Sets `key` to `value` if it currently holds `expected` (`undefined`/`null`: absent).
    /// Resolves to `{ swapped, previous }`. Uses TiKV's atomic mode: every writer of these
    /// keys must go through compare-and-swap or atomic writes.
    #[wasm_bindgen(js_name = compareAndSwap, unchecked_return_type = "Promise<{ swapped: boolean; previous?: Uint8Array }>")]
    pub fn compare_and_swap(&self, key: JsValue, expected: JsValue, value: JsValue) -> Promise {
        let client = self.inner.with_atomic_for_cas();
        future_to_promise(async move {
            let expected = if expected.is_undefined() || expected.is_null() {
                None
            } else {
                Some(bytes(&expected)?)
            };
            let (previous, swapped) = client
                .compare_and_swap(bytes(&key)?, expected, bytes(&value)?)
                .await
                .map_err(js_error)?;
            let o = Object::new();
            let _ = Reflect::set(&o, &"swapped".into(), &swapped.into());
            let previous = previous.map_or(JsValue::UNDEFINED, |p| js_bytes(&p));
            let _ = Reflect::set(&o, &"previous".into(), &previous);
            Ok(o.into())
        })
    }

    /// Deletes `key`.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn delete(&self, key: JsValue) -> Promise {
        let client = self.inner.clone();
        future_to_promise(async move {
            client.delete(bytes(&key)?).await.map_err(js_error)?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Up to `limit` `{ key, value }` pairs with `start <= key < end` (an empty end: no end).
    #[wasm_bindgen(
        unchecked_return_type = "Promise<Array<{ key: Uint8Array; value: Uint8Array }>>"
    )]
    pub fn scan(&self, start: JsValue, end: JsValue, limit: u32) -> Promise {
        let client = self.inner.clone();
        future_to_promise(async move {
            let (start, end) = (Key::from(bytes(&start)?), Key::from(bytes(&end)?));
            let found = client.scan(start..end, limit).await.map_err(js_error)?;
            Ok(pairs(found))
        })
    }

    /// Deletes every key with `start <= key < end`.
    #[wasm_bindgen(js_name = deleteRange, unchecked_return_type = "Promise<void>")]
    pub fn delete_range(&self, start: JsValue, end: JsValue) -> Promise {
        let client = self.inner.clone();
        future_to_promise(async move {
            let (start, end) = (Key::from(bytes(&start)?), Key::from(bytes(&end)?));
            client.delete_range(start..end).await.map_err(js_error)?;
            Ok(JsValue::UNDEFINED)
        })
    }
}

/// A transactional client.
#[wasm_bindgen]
pub struct TransactionClient {
    inner: tikv_client::TransactionClient,
}

#[wasm_bindgen]
impl TransactionClient {
    /// Connects through PD; resolves to a `TransactionClient`.
    #[wasm_bindgen(unchecked_return_type = "Promise<TransactionClient>")]
    pub fn connect(
        #[wasm_bindgen(unchecked_param_type = "string[]")] pd: Array,
        #[wasm_bindgen(unchecked_optional_param_type = "ConnectOptions")] options: Option<Object>,
    ) -> Promise {
        future_to_promise(async move {
            let config = config(&options.map_or(JsValue::UNDEFINED, Into::into))?;
            let inner = tikv_client::TransactionClient::new_with_config(endpoints(&pd)?, config)
                .await
                .map_err(js_error)?;
            Ok(TransactionClient { inner }.into())
        })
    }

    /// Begins a transaction (`{ pessimistic, asyncCommit, tryOnePc }`, all off by default).
    #[wasm_bindgen(unchecked_return_type = "Promise<Transaction>")]
    pub fn begin(
        &self,
        #[wasm_bindgen(unchecked_optional_param_type = "BeginOptions")] options: Option<Object>,
    ) -> Promise {
        let client = self.inner.clone();
        future_to_promise(async move {
            let options = options.map_or(JsValue::UNDEFINED, Into::into);
            let base = if bool_option(&options, "pessimistic")? {
                TransactionOptions::new_pessimistic()
            } else {
                TransactionOptions::new_optimistic()
            };
            let options = base
                .use_async_commit(bool_option(&options, "asyncCommit")?)
                .try_one_pc(bool_option(&options, "tryOnePc")?);
            let txn = client.begin_with_options(options).await.map_err(js_error)?;
            Ok(Transaction {
                inner: Rc::new(Mutex::new(txn)),
            }
            .into())
        })
    }
}

/// A transaction. Its methods may be called one at a time.
#[wasm_bindgen]
pub struct Transaction {
    inner: Rc<Mutex<tikv_client::Transaction>>,
}

#[wasm_bindgen]
impl Transaction {
    /// The value of `key` (this transaction's own writes first), or `undefined`.
    #[wasm_bindgen(unchecked_return_type = "Promise<Uint8Array | undefined>")]
    pub fn get(&self, key: JsValue) -> Promise {
        let txn = self.inner.clone();
        future_to_promise(async move {
            let value = txn.lock().await.get(bytes(&key)?).await.map_err(js_error)?;
            Ok(value.map_or(JsValue::UNDEFINED, |v| js_bytes(&v)))
        })
    }

    /// Sets `key` to `value` in this transaction.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn put(&self, key: JsValue, value: JsValue) -> Promise {
        let txn = self.inner.clone();
        future_to_promise(async move {
            let (key, value) = (bytes(&key)?, bytes(&value)?);
            txn.lock().await.put(key, value).await.map_err(js_error)?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Deletes `key` in this transaction.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn delete(&self, key: JsValue) -> Promise {
        let txn = self.inner.clone();
        future_to_promise(async move {
            txn.lock()
                .await
                .delete(bytes(&key)?)
                .await
                .map_err(js_error)?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Up to `limit` `{ key, value }` pairs with `start <= key < end`, own writes included.
    #[wasm_bindgen(
        unchecked_return_type = "Promise<Array<{ key: Uint8Array; value: Uint8Array }>>"
    )]
    pub fn scan(&self, start: JsValue, end: JsValue, limit: u32) -> Promise {
        let txn = self.inner.clone();
        future_to_promise(async move {
            let (start, end) = (Key::from(bytes(&start)?), Key::from(bytes(&end)?));
            let found = txn
                .lock()
                .await
                .scan(start..end, limit)
                .await
                .map_err(js_error)?;
            Ok(pairs(found))
        })
    }

    /// Commits; resolves to the commit timestamp as a decimal string (or `undefined` if the
    /// transaction wrote nothing).
    #[wasm_bindgen(unchecked_return_type = "Promise<string | undefined>")]
    pub fn commit(&self) -> Promise {
        let txn = self.inner.clone();
        future_to_promise(async move {
            let ts = txn.lock().await.commit().await.map_err(js_error)?;
            Ok(ts.map_or(JsValue::UNDEFINED, |t| t.version().to_string().into()))
        })
    }

    /// Rolls back.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn rollback(&self) -> Promise {
        let txn = self.inner.clone();
        future_to_promise(async move {
            txn.lock().await.rollback().await.map_err(js_error)?;
            Ok(JsValue::UNDEFINED)
        })
    }
}
