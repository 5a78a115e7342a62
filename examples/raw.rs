//! Raw key-value operations: put, get, batches, scans, delete range.
//!
//! With `PD_ADDRS` unset it starts the embedded mock cluster (three stores, several regions)
//! and works against that; set `PD_ADDRS=host:port[,host:port...]` to use a real cluster.
//!
//! ```text
//! cargo run --example raw --features testutils
//! PD_ADDRS=127.0.0.1:2379 cargo run --example raw --features testutils
//! ```

use tikv_client::testutils::MockCluster;
use tikv_client::{KvPair, RawClient};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (_embedded, endpoints) = match std::env::var("PD_ADDRS") {
        Ok(addrs) => (None, addrs.split(',').map(str::to_owned).collect()),
        Err(_) => {
            let cluster = MockCluster::builder()
                .split_raw(["user/3", "user/6"])
                .start()
                .await?;
            println!(
                "embedded mock cluster: PD at {}, {} regions",
                cluster.pd_endpoint(),
                cluster.regions().len()
            );
            let endpoints = vec![cluster.pd_endpoint()];
            (Some(cluster), endpoints)
        }
    };
    let client = RawClient::new(endpoints).await?;
    println!("connected to cluster {}", client.cluster_id());

    client.put("user/1", "alice").await?;
    println!(
        "get user/1 -> {:?}",
        client.get("user/1").await?.map(String::from_utf8)
    );

    let users: Vec<KvPair> = (2..=9)
        .map(|i| KvPair::new(format!("user/{i}"), format!("user number {i}")))
        .collect();
    client.batch_put(users).await?;
    let values = client
        .batch_get_values(["user/2", "user/42", "user/9"])
        .await?;
    println!(
        "batch_get_values -> {} found of {}",
        values.iter().flatten().count(),
        values.len()
    );

    println!("scan user/ (crosses region boundaries):");
    for pair in client.scan("user/".."user0", 100).await? {
        println!(
            "  {:?} = {}",
            pair.key,
            String::from_utf8_lossy(pair.value())
        );
    }
    let newest = client.scan_keys_reverse("user/".."user0", 3).await?;
    println!("last three keys: {newest:?}");

    client.delete_range("user/".."user0").await?;
    println!(
        "after delete_range: {} keys left",
        client.scan("user/".."user0", 100).await?.len()
    );
    Ok(())
}
