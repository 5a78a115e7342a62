//! `tikv-mock`: the in-memory cluster as a process, for browsers, Node and other languages'
//! tests.
//!
//! ```text
//! tikv-mock [--pd-port 2379] [--pd-members 1] [--stores 3] [--api-version v1|v1ttl|v2]
//!           [--split KEY,...] [--txn-split KEY,...] [--keyspace NAME,...] [--cluster-id N]
//!           [--allow-origin ORIGIN,...] [--allow-host HOST,...]
//!           [--tls [--tls-dir DIR] [--tls-mutual]]
//!           [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]]
//! ```
//!
//! Keys are UTF-8, or hex with a `0x` prefix. `--split` places region boundaries at raw keys,
//! `--txn-split` at transactional keys (memcomparable-encoded, as TiKV stores them). Clients
//! that decode every region boundary as a transactional key (client-rust's and client-go's
//! transaction clients) need a cluster split with `--txn-split` only. PD's HTTP API
//! (`/pd/api/v1/version`, `/stores`, `/regions`) is served on the PD port. `--pd-members N`
//! runs PD as N members (`pd-1` on the PD port, the others on free ports), `pd-1` leading.
//! When ready it prints one JSON line,
//! `{"pd":"127.0.0.1:2379","stores":["127.0.0.1:...",...],"api_version":"v1","pd_members":["127.0.0.1:2379",...]}`
//! (with TLS, a `tls` object too, see below),
//! then serves until SIGINT or SIGTERM.
//!
//! It answers only requests that name a local host (`localhost`, `127.0.0.1`, `[::1]`, any
//! port) in `Host` or `:authority`, and browser pages of local origins (`http(s)://` those
//! hosts): any other page a developer opens could otherwise reach it, by CORS or by DNS
//! rebinding. Others get 403. `--allow-host` adds host names (such as a container's name),
//! `--allow-origin` adds page origins (`https://app.example:8443`, matched exactly);
//! `--allow-origin '*'` allows every origin, which is unsafe on a machine that browses the web.
//!
//! `--tls` serves PD and the stores over TLS (gRPC-web and the HTTP API over HTTPS) with a
//! CA, a server certificate for `127.0.0.1` and `localhost` and a client certificate made at
//! start and written as PEM files into `--tls-dir` (default: a new directory under the
//! system's temporary directory, removed at exit); `--tls-mutual` also requires clients to
//! present a certificate signed by that CA. `--tls-cert` and `--tls-key` serve given files
//! instead, `--tls-client-ca` requiring client certificates signed by the given CA. With TLS
//! the JSON line has a `tls` object naming the files (`ca`, `client_cert` and `client_key` for
//! clients when generated; `server_cert`, `server_key`; `client_ca`; `mutual`).
//!
//! Tests drive the running mock through its admin API, JSON over HTTP under `/mock/api/v1/` on
//! every PD member's port, for loopback clients only (docs/mock-admin.md has every endpoint):
//!
//! ```text
//! POST   rules                 {"method":"RawGet","nth":1,"region_error":"ServerIsBusy"} -> {"id":1}
//!                              (condition: method, store, region, key_prefix, nth, probability,
//!                              times; one reaction: region_error, status {code, message},
//!                              delay_ms, delay_reply_ms, drop_connection, lose_reply,
//!                              no_region (PD region queries))
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

use std::path::{Path, PathBuf};

use tikv_client::testutils::{
    parse_key, ApiVersion, MockCluster, MockClusterBuilder, MockTls, TestPki,
};

const USAGE: &str = "usage: tikv-mock [--pd-port PORT] [--pd-members N] [--stores N] \
[--api-version v1|v1ttl|v2] [--split KEY,...] [--txn-split KEY,...] [--keyspace NAME,...] \
[--cluster-id N] [--allow-origin ORIGIN,...] [--allow-host HOST,...] \
[--tls [--tls-dir DIR] [--tls-mutual]] [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]]";

/// The TLS options given on the command line.
#[derive(Default)]
struct TlsArgs {
    generate: bool,
    dir: Option<PathBuf>,
    mutual: bool,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
}

/// How the cluster serves TLS, and the files to name in the JSON line.
struct TlsSetup {
    tls: MockTls,
    files: serde_json::Map<String, serde_json::Value>,
    /// A directory this process made for generated files, removed at exit.
    temporary: Option<PathBuf>,
}

impl TlsArgs {
    fn setup(self) -> Result<Option<TlsSetup>, String> {
        let given = self.cert.is_some() || self.key.is_some() || self.client_ca.is_some();
        if self.generate && given {
            return Err(format!(
                "--tls generates certificates: drop --tls-cert/--tls-key/--tls-client-ca\n{USAGE}"
            ));
        }
        if !self.generate && (self.dir.is_some() || self.mutual) {
            return Err(format!("--tls-dir and --tls-mutual need --tls\n{USAGE}"));
        }
        let path = |p: &Path| serde_json::Value::from(p.display().to_string());
        let mut files = serde_json::Map::new();
        if self.generate {
            let temporary = self.dir.is_none().then(|| {
                std::env::temp_dir().join(format!("tikv-mock-tls-{}", std::process::id()))
            });
            let dir = self.dir.or_else(|| temporary.clone()).unwrap_or_default();
            let pki = TestPki::generate().map_err(|e| e.to_string())?;
            let written = pki
                .write_to(&dir)
                .map_err(|e| format!("--tls-dir {}: {e}", dir.display()))?;
            for (name, file) in [
                ("ca", &written.ca_cert),
                ("client_cert", &written.client_cert),
                ("client_key", &written.client_key),
                ("server_cert", &written.server_cert),
                ("server_key", &written.server_key),
            ] {
                files.insert(name.into(), path(file));
            }
            files.insert("mutual".into(), self.mutual.into());
            let tls = if self.mutual {
                pki.mutual_tls()
            } else {
                pki.server_tls()
            };
            return Ok(Some(TlsSetup {
                tls,
                files,
                temporary,
            }));
        }
        let (cert, key) = match (self.cert, self.key) {
            (None, None) if self.client_ca.is_none() => return Ok(None),
            (Some(cert), Some(key)) => (cert, key),
            _ => return Err(format!("--tls-cert and --tls-key come together\n{USAGE}")),
        };
        let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
        let mut tls = MockTls::new(read(&cert)?, read(&key)?);
        files.insert("server_cert".into(), path(&cert));
        files.insert("server_key".into(), path(&key));
        if let Some(ca) = &self.client_ca {
            tls = tls.require_client_cert(read(ca)?);
            files.insert("client_ca".into(), path(ca));
        }
        files.insert("mutual".into(), tls.is_mutual().into());
        Ok(Some(TlsSetup {
            tls,
            files,
            temporary: None,
        }))
    }
}

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

fn parse_args() -> Result<(MockClusterBuilder, ApiVersion, Option<TlsSetup>), String> {
    let mut args = std::env::args().skip(1);
    let mut builder = MockCluster::builder().pd_port(2379);
    let mut api = ApiVersion::V1;
    let mut tls = TlsArgs::default();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Err(USAGE.into()),
            "--tls" => {
                tls.generate = true;
                continue;
            }
            "--tls-mutual" => {
                tls.mutual = true;
                continue;
            }
            _ => {}
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
            "--tls-dir" => {
                tls.dir = Some(value.into());
                builder
            }
            "--tls-cert" => {
                tls.cert = Some(value.into());
                builder
            }
            "--tls-key" => {
                tls.key = Some(value.into());
                builder
            }
            "--tls-client-ca" => {
                tls.client_ca = Some(value.into());
                builder
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        };
    }
    let tls = tls.setup()?;
    if let Some(setup) = &tls {
        builder = builder.tls(setup.tls.clone());
    }
    Ok((builder, api, tls))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let (builder, api, tls) = match parse_args() {
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
    let tls_field = tls.as_ref().map_or(String::new(), |setup| {
        format!(r#","tls":{}"#, serde_json::Value::from(setup.files.clone()))
    });
    // Written by hand to keep the documented key order.
    println!(
        r#"{{"pd":{},"stores":{},"api_version":"{}","pd_members":{}{tls_field}}}"#,
        serde_json::Value::from(cluster.pd_endpoint()),
        serde_json::Value::from(cluster.store_addrs()),
        api.name(),
        serde_json::Value::from(cluster.pd_endpoints()),
    );
    wait_for_signal().await;
    drop(cluster);
    if let Some(dir) = tls.and_then(|setup| setup.temporary) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
