//! Connects to PD and prints the cluster's membership.
//!
//! With `PD_ADDRS` unset it starts the embedded mock cluster and talks to that; set
//! `PD_ADDRS=host:port[,host:port...]` to use a real cluster.
//!
//! ```text
//! cargo run --example members --features testutils
//! PD_ADDRS=127.0.0.1:2379 cargo run --example members --features testutils
//! ```

use tikv_client::pd::PdClient;
use tikv_client::testutils::MockCluster;
use tikv_client::Config;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (_embedded, endpoints) = match std::env::var("PD_ADDRS") {
        Ok(addrs) => (None, addrs.split(',').map(str::to_owned).collect()),
        Err(_) => {
            let cluster = MockCluster::builder().start().await?;
            println!(
                "started the embedded mock cluster, PD at {}",
                cluster.pd_endpoint()
            );
            let endpoints = vec![cluster.pd_endpoint()];
            (Some(cluster), endpoints)
        }
    };
    let pd = PdClient::connect(&endpoints, &Config::default()).await?;
    println!("cluster id: {}", pd.cluster_id());
    println!(
        "leader:     {} at {}",
        pd.leader().name,
        pd.leader().client_urls.join(", ")
    );
    for member in pd.members() {
        println!(
            "member:     {} (id {}) at {}",
            member.name,
            member.id,
            member.client_urls.join(", ")
        );
    }
    Ok(())
}
