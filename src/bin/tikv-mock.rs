//! `tikv-mock`: the in-memory cluster as a process, for browsers, Node and other languages'
//! tests.
//!
//! ```text
//! tikv-mock [--pd-port 2379] [--pd-members 1] [--stores 3] [--api-version v1|v1ttl|v2]
//!           [--split KEY,...] [--txn-split KEY,...] [--keyspace NAME,...] [--cluster-id N]
//!           [--allow-origin ORIGIN,...] [--allow-host HOST,...]
//! ```
//!
//! Keys are UTF-8, or hex with a `0x` prefix. `--split` places region boundaries at raw keys,
//! `--txn-split` at transactional keys (memcomparable-encoded, as TiKV stores them). Clients
//! that decode every region boundary as a transactional key (client-rust's and client-go's
//! transaction clients) need a cluster split with `--txn-split` only. PD's HTTP API
//! (`/pd/api/v1/version`, `/stores`, `/regions`) is served on the PD port. `--pd-members N`
//! runs PD as N members (`pd-1` on the PD port, the others on free ports), `pd-1` leading.
//! When ready it prints one JSON line,
//! `{"pd":"127.0.0.1:2379","stores":["127.0.0.1:...",...],"api_version":"v1","pd_members":["127.0.0.1:2379",...]}`,
//! then serves until SIGINT or SIGTERM.
//!
//! It answers only requests that name a local host (`localhost`, `127.0.0.1`, `[::1]`, any
//! port) in `Host` or `:authority`, and browser pages of local origins (`http(s)://` those
//! hosts): any other page a developer opens could otherwise reach it, by CORS or by DNS
//! rebinding. Others get 403. `--allow-host` adds host names (such as a container's name),
//! `--allow-origin` adds page origins (`https://app.example:8443`, matched exactly);
//! `--allow-origin '*'` allows every origin, which is unsafe on a machine that browses the web.
//!
//! Tests drive the running mock through its admin API, JSON over HTTP under `/mock/api/v1/` on
//! every PD member's port, for loopback clients only (docs/mock-admin.md has every endpoint):
//!
//! ```text
//! POST   rules                 {"method":"RawGet","nth":1,"region_error":"ServerIsBusy"} -> {"id":1}
//!                              (condition: method, store, region, key_prefix, nth, probability,
//!                              times; one reaction: region_error, status {code, message},
//!                              delay_ms, delay_reply_ms, drop_connection, lose_reply)
//! GET    rules                 the active rules, with their ids
//! DELETE rules/{id}, rules     remove one rule, or all
//! GET    calls[?method=NAME]   the call log; DELETE calls empties it
//! POST   split                 {"key":"m","kind":"raw"|"txn"}
//! POST   transfer-leader       {"region":2,"store":3}
//! POST   stores/{id}/stop      and stores/{id}/start
//! POST   pd/transfer-leader    {"to":1}
//! ```
//!
//! For example `curl -X POST http://127.0.0.1:2379/mock/api/v1/rules -d
//! '{"method":"RawPut","lose_reply":true}'`.
//!
//! `RUST_LOG=debug` logs each request; `RUST_LOG=trace` also prints every TiKV request and
//! response in full.

use tikv_client::testutils::{parse_key, ApiVersion, MockCluster, MockClusterBuilder};

const USAGE: &str = "usage: tikv-mock [--pd-port PORT] [--pd-members N] [--stores N] \
[--api-version v1|v1ttl|v2] [--split KEY,...] [--txn-split KEY,...] [--keyspace NAME,...] \
[--cluster-id N] [--allow-origin ORIGIN,...] [--allow-host HOST,...]";

fn parse_keys(value: &str) -> Result<Vec<Vec<u8>>, String> {
    list(value).map(|k| parse_key(&k)).collect()
}

/// A comma-separated list, empty entries dropped.
fn list(value: &str) -> impl Iterator<Item = String> + '_ {
    value
        .split(',')
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
}

fn parse_args() -> Result<(MockClusterBuilder, ApiVersion), String> {
    let mut args = std::env::args().skip(1);
    let mut builder = MockCluster::builder().pd_port(2379);
    let mut api = ApiVersion::V1;
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Err(USAGE.into());
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))?;
        let number = |what: &str| {
            value
                .parse::<u64>()
                .map_err(|_| format!("{arg}: not {what}: {value}"))
        };
        builder = match arg.as_str() {
            "--pd-port" => {
                let port = number("a port number")?;
                builder.pd_port(
                    u16::try_from(port).map_err(|_| format!("--pd-port: {port} is not a port"))?,
                )
            }
            "--pd-members" => builder.pd_members(number("a member count")? as usize),
            "--stores" => builder.stores(number("a store count")? as usize),
            "--cluster-id" => builder.cluster_id(number("a number")?),
            "--api-version" => {
                api = value.parse()?;
                builder.api_version(api)
            }
            "--split" => builder.split_raw(parse_keys(&value)?),
            "--txn-split" => builder.split_txn(parse_keys(&value)?),
            "--keyspace" => builder.keyspaces(list(&value)),
            "--allow-origin" => builder.allow_origins(list(&value)),
            "--allow-host" => builder.allow_hosts(list(&value)),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        };
    }
    Ok((builder, api))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let (builder, api) = match parse_args() {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let cluster = match builder.start().await {
        Ok(cluster) => cluster,
        Err(e) => {
            eprintln!("tikv-mock: cannot start: {e}");
            std::process::exit(1);
        }
    };
    // Written by hand to keep the documented key order.
    println!(
        r#"{{"pd":{},"stores":{},"api_version":"{}","pd_members":{}}}"#,
        serde_json::Value::from(cluster.pd_endpoint()),
        serde_json::Value::from(cluster.store_addrs()),
        api.name(),
        serde_json::Value::from(cluster.pd_endpoints()),
    );
    wait_for_signal().await;
    drop(cluster);
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
