//! `tikv-mock`: the in-memory cluster as a process, for browsers, Node and other languages'
//! tests.
//!
//! ```text
//! tikv-mock [--pd-port 2379] [--cluster-id N]
//! ```
//!
//! When ready it prints one JSON line, `{"pd":"127.0.0.1:2379","stores":[],"api_version":"v1"}`,
//! then serves until SIGINT or SIGTERM. `RUST_LOG=debug` logs each request.

use tikv_client::testutils::{MockCluster, MockClusterBuilder};

const USAGE: &str = "usage: tikv-mock [--pd-port PORT] [--cluster-id N]";

fn parse_args() -> Result<MockClusterBuilder, String> {
    let mut args = std::env::args().skip(1);
    let mut builder = MockCluster::builder().pd_port(2379);
    while let Some(arg) = args.next() {
        let mut value = |what: &str| {
            let v = args.next().ok_or(format!("{arg} needs {what}"))?;
            v.parse::<u64>()
                .map_err(|_| format!("{arg}: not {what}: {v}"))
        };
        builder = match arg.as_str() {
            "--pd-port" => {
                let port = value("a port number")?;
                builder.pd_port(
                    u16::try_from(port).map_err(|_| format!("--pd-port: {port} is not a port"))?,
                )
            }
            "--cluster-id" => builder.cluster_id(value("a number")?),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        };
    }
    Ok(builder)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let builder = match parse_args() {
        Ok(builder) => builder,
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
        r#"{{"pd":{},"stores":{},"api_version":"v1"}}"#,
        serde_json::Value::from(cluster.pd_endpoint()),
        serde_json::Value::from(Vec::<String>::new()),
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
