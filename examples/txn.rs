//! Transactions: snapshot isolation, a write conflict, and a transfer between accounts.
//!
//! With `PD_ADDRS` unset it starts the embedded mock cluster; set
//! `PD_ADDRS=host:port[,host:port...]` to use a real cluster.
//!
//! ```text
//! cargo run --example txn --features testutils
//! ```

use tikv_client::testutils::MockCluster;
use tikv_client::{Error, TransactionClient};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (_embedded, endpoints) = match std::env::var("PD_ADDRS") {
        Ok(addrs) => (None, addrs.split(',').map(str::to_owned).collect()),
        Err(_) => {
            let cluster = MockCluster::builder()
                .split_txn(["account/m"])
                .start()
                .await?;
            println!("embedded mock cluster: PD at {}", cluster.pd_endpoint());
            let endpoints = vec![cluster.pd_endpoint()];
            (Some(cluster), endpoints)
        }
    };
    let client = TransactionClient::new(endpoints).await?;

    let mut setup = client.begin_optimistic().await?;
    setup.put("account/alice", "100").await?;
    setup.put("account/zoe", "100").await?;
    let ts = setup.commit().await?;
    println!("opened two accounts, committed at {ts:?}");

    // Two transactions read the same balance; the second to commit conflicts.
    let mut first = client.begin_optimistic().await?;
    let mut second = client.begin_optimistic().await?;
    for txn in [&mut first, &mut second] {
        let balance: i64 =
            String::from_utf8(txn.get("account/alice").await?.unwrap_or_default())?.parse()?;
        txn.put("account/alice", (balance - 10).to_string()).await?;
    }
    first.commit().await?;
    match second.commit().await {
        Err(Error::WriteConflict(c)) => println!(
            "second writer conflicted, as expected (commit ts {})",
            c.conflict_commit_ts
        ),
        other => println!("unexpected: {other:?}"),
    }

    // A transfer across two regions, atomically.
    let mut transfer = client.begin_optimistic().await?;
    transfer.put("account/alice", "40").await?;
    transfer.put("account/zoe", "150").await?;
    transfer.commit().await?;
    let reader = client.begin_optimistic().await?;
    for pair in reader.scan("account/".."account0", 10).await? {
        println!("{:?} = {}", pair.key, String::from_utf8_lossy(pair.value()));
    }
    Ok(())
}
