//! What connecting says when the Sentinels answer but the primary they name does not: it
//! blames that server, not the Sentinels.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use switchyard_testkit::sentinel::SentinelSet;
use switchyard_topology::{Options, Topology};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_primary_the_sentinels_still_name_is_blamed() {
    // No replica: the Sentinel keeps naming the primary after it died.
    let mut set = tokio::task::block_in_place(|| SentinelSet::start(0, 1)).unwrap();
    let port = tokio::task::block_in_place(|| set.kill_primary()).unwrap();
    let err = Topology::connect(&set.url(), &Options::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "names 127.0.0.1:{port} as the primary, which failed"
        )),
        "{err}"
    );
}
