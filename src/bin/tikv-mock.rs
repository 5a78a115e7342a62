//! `tikv-mock`: the in-memory cluster as a process, for browsers, Node and other languages'
//! tests.
//!
//! ```text
//! tikv-mock [--pd-port 2379] [--pd-members 1] [--stores 3] [--api-version v1|v1ttl|v2]
//!           [--split KEY,...] [--txn-split KEY,...] [--keyspace NAME,...] [--cluster-id N]
//!           [--allow-origin ORIGIN,...] [--allow-host HOST,...]
//!           [--region-max-keys N] [--region-split-keys N]
//!           [--region-max-size BYTES] [--region-split-size BYTES]
//!           [--merge-max-keys N] [--merge-max-size BYTES] [--split-merge-interval SECONDS]
//!           [--tls [--tls-dir DIR] [--tls-mutual]]
//!           [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]]
//!           [--grpc-compression-type none|gzip]
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
//! `--grpc-compression-type gzip` compresses PD's and the stores' responses for clients that
//! accept gzip, as TiKV's `server.grpc-compression-type`; the default, `none`, as in TiKV,
//! sends them uncompressed. Compressed requests are accepted either way.
//!
//! Regions split only when asked unless `--region-max-keys` or `--region-max-size` is given:
//! then a region that reached it after a write splits by itself into pieces of
//! `--region-split-keys` keys (or `--region-split-size` bytes), as TiKV's split checker splits
//! it. Each split threshold defaults to two thirds of its maximum, and a maximum given alone
//! by its threshold to 3/2 of it, as TiKV derives it. `--merge-max-keys` and
//! `--merge-max-size` let PD merge regions of at most that many keys and bytes into a
//! neighbour (PD's `max-merge-region-keys`, `max-merge-region-size`; the other defaults to
//! PD's 200000 keys or 20 MiB), not within `--split-merge-interval` seconds of a split
//! (default 0). Sizes are bytes, or a number with a `KiB`, `MiB` or `GiB` suffix (`KB`, `MB`,
//! `GB` mean the same, as in TiKV's configuration).
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
    parse_key, ApiVersion, MergePolicy, MockCluster, MockClusterBuilder, MockTls, SplitPolicy,
    TestPki,
};

const USAGE: &str = "usage: tikv-mock [--pd-port PORT] [--pd-members N] [--stores N] \
[--api-version v1|v1ttl|v2] [--split KEY,...] [--txn-split KEY,...] [--keyspace NAME,...] \
[--cluster-id N] [--allow-origin ORIGIN,...] [--allow-host HOST,...] \
[--region-max-keys N] [--region-split-keys N] [--region-max-size BYTES] \
[--region-split-size BYTES] [--merge-max-keys N] [--merge-max-size BYTES] \
[--split-merge-interval SECONDS] \
[--tls [--tls-dir DIR] [--tls-mutual]] [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]] \
[--grpc-compression-type none|gzip]";

/// The organic split and merge options given on the command line.
#[derive(Debug, Default)]
struct RegionArgs {
    max_keys: Option<u64>,
    split_keys: Option<u64>,
    max_size: Option<u64>,
    split_size: Option<u64>,
    merge_max_keys: Option<u64>,
    merge_max_size: Option<u64>,
    split_merge_interval: Option<u64>,
}

impl RegionArgs {
    /// The split policy and, when a merge flag is given, the merge policy.
    fn policies(&self) -> Result<(SplitPolicy, Option<MergePolicy>), String> {
        let mut split = SplitPolicy::default();
        if let Some((max, at)) = split_limit("keys", self.max_keys, self.split_keys)? {
            split = split.keys(max, at);
        }
        if let Some((max, at)) = split_limit("size", self.max_size, self.split_size)? {
            split = split.size(max, at);
        }
        let merge = match (self.merge_max_keys, self.merge_max_size) {
            (None, None) if self.split_merge_interval.is_some() => {
                return Err(format!(
                    "--split-merge-interval needs --merge-max-keys or --merge-max-size\n{USAGE}"
                ))
            }
            (None, None) => None,
            (keys, size) => Some(
                MergePolicy::new(
                    keys.unwrap_or(MergePolicy::PD_DEFAULT.max_keys()),
                    size.unwrap_or(MergePolicy::PD_DEFAULT.max_size()),
                )
                .split_merge_interval(std::time::Duration::from_secs(
                    self.split_merge_interval.unwrap_or(0),
                )),
            ),
        };
        Ok((split, merge))
    }
}

/// A maximum and split threshold (`what` is `keys` or `size`) from the flags given, the
/// missing one derived: a threshold is two thirds of its maximum, a maximum 3/2 of its
/// threshold (TiKV's derivation). `None` when neither is given.
fn split_limit(
    what: &str,
    max: Option<u64>,
    split: Option<u64>,
) -> Result<Option<(u64, u64)>, String> {
    let (max, split) = match (max, split) {
        (None, None) => return Ok(None),
        (Some(max), None) => (max, (max / 3 * 2).max(1)),
        (None, Some(split)) => (split.saturating_mul(3) / 2, split),
        (Some(max), Some(split)) => (max, split),
    };
    if split == 0 || max == 0 {
        return Err(format!(
            "--region-max-{what} and --region-split-{what} must be at least 1\n{USAGE}"
        ));
    }
    if split > max {
        return Err(format!(
            "--region-split-{what} {split} is above --region-max-{what} {max}: regions would \
             split into pieces larger than the size that splits them\n{USAGE}"
        ));
    }
    Ok(Some((max, split)))
}

/// A size in bytes: a number, optionally with a `KiB`, `MiB` or `GiB` suffix (`KB`, `MB`, `GB`,
/// `K`, `M`, `G` and a trailing `B` alike, binary as in TiKV's configuration).
fn parse_size(value: &str) -> Option<u64> {
    let value = value.trim();
    let digits = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(digits);
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(1 << shift)
}

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
    let mut regions = RegionArgs::default();
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
        let size = || {
            parse_size(&value)
                .ok_or_else(|| format!("{arg}: not a size (bytes, or 64KiB, 96MiB...): {value}"))
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
            "--grpc-compression-type" => match value.as_str() {
                "none" => builder.compress_responses(false),
                "gzip" => builder.compress_responses(true),
                other => return Err(format!("{arg}: none or gzip, not {other}\n{USAGE}")),
            },
            "--region-max-keys" => {
                regions.max_keys = Some(number("a key count")?);
                builder
            }
            "--region-split-keys" => {
                regions.split_keys = Some(number("a key count")?);
                builder
            }
            "--region-max-size" => {
                regions.max_size = Some(size()?);
                builder
            }
            "--region-split-size" => {
                regions.split_size = Some(size()?);
                builder
            }
            "--merge-max-keys" => {
                regions.merge_max_keys = Some(number("a key count")?);
                builder
            }
            "--merge-max-size" => {
                regions.merge_max_size = Some(size()?);
                builder
            }
            "--split-merge-interval" => {
                regions.split_merge_interval = Some(number("a number of seconds")?);
                builder
            }
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
    let (split, merge) = regions.policies()?;
    builder = builder.split_policy(split);
    if let Some(merge) = merge {
        builder = builder.merge_policy(merge);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("64KiB"), Some(64 << 10));
        assert_eq!(parse_size("96MB"), Some(96 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("12 MiB"), Some(12 << 20));
        for bad in ["", "MiB", "12 parsecs", "-1", "99999999999999999999G"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn split_flags_derive_the_missing_half_and_refuse_thresholds_above_the_maximum() {
        let (split, merge) = RegionArgs {
            max_keys: Some(10),
            split_keys: Some(7),
            ..RegionArgs::default()
        }
        .policies()
        .unwrap();
        assert_eq!(split, SplitPolicy::default().keys(10, 7));
        assert!(merge.is_none());
        let derived = |max, split| {
            RegionArgs {
                max_size: max,
                split_size: split,
                ..RegionArgs::default()
            }
            .policies()
            .unwrap()
            .0
        };
        assert_eq!(derived(Some(90), None), SplitPolicy::default().size(90, 60));
        assert_eq!(derived(None, Some(64)), SplitPolicy::default().size(96, 64));
        assert_eq!(derived(Some(1), None), SplitPolicy::default().size(1, 1));

        let error = RegionArgs {
            max_keys: Some(5),
            split_keys: Some(7),
            ..RegionArgs::default()
        }
        .policies()
        .unwrap_err();
        assert!(
            error.starts_with("--region-split-keys 7 is above --region-max-keys 5"),
            "{error}"
        );
        let error = RegionArgs {
            split_size: Some(0),
            ..RegionArgs::default()
        }
        .policies()
        .unwrap_err();
        assert!(error.contains("must be at least 1"), "{error}");
    }

    #[test]
    fn merge_flags_default_the_other_limit_to_pd() {
        let (_, merge) = RegionArgs {
            merge_max_keys: Some(3),
            split_merge_interval: Some(60),
            ..RegionArgs::default()
        }
        .policies()
        .unwrap();
        let merge = merge.unwrap();
        assert_eq!(merge.max_keys(), 3);
        assert_eq!(merge.max_size(), MergePolicy::PD_DEFAULT.max_size());
        let error = RegionArgs {
            split_merge_interval: Some(60),
            ..RegionArgs::default()
        }
        .policies()
        .unwrap_err();
        assert!(error.contains("needs --merge-max-keys"), "{error}");
    }
}
