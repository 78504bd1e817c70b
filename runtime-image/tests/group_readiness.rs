//! Group readiness: a rank's `/readyz` is 200 only when the rendezvous is complete and its
//! engine is healthy, and the leader's only while every rank of the group is too. A worker
//! that dies after the group formed makes the leader not ready (before, the leader kept
//! answering 200 for a group that could no longer serve).

mod common;

use std::time::Duration;

use common::*;
use deepseek_engine::SimProfile;

async fn readyz(c: &reqwest::Client, l: &Launcher) -> (u16, String) {
    get(c, &format!("{}/readyz", l.launcher_url()))
        .await
        .unwrap_or((0, "no answer".into()))
}

#[tokio::test]
async fn the_leader_is_ready_only_while_every_rank_is() {
    let cfg = sim_config(2, SimProfile::default());
    let leader_port = free_port_on("127.0.0.4");
    let flags = ["--rendezvous-timeout", "60", "--drain-seconds", "1"];
    let leader = spawn_launcher_at(&cfg, 0, "127.0.0.4", "127.0.0.4", leader_port, &flags, &[]);
    let c = client();
    wait_until("the leader answers", Duration::from_secs(30), || async {
        readyz(&c, &leader).await.0 != 0
    })
    .await;
    let (status, body) = readyz(&c, &leader).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("missing ranks [1]"), "{body}");

    let worker = spawn_launcher_at(&cfg, 1, "127.0.0.5", "127.0.0.4", leader_port, &flags, &[]);
    wait_until("the group is ready", Duration::from_secs(60), || async {
        readyz(&c, &leader).await.0 == 200 && readyz(&c, &worker).await.0 == 200
    })
    .await;

    // The worker's launcher dies (its pod is gone): the group can no longer serve.
    worker.sigkill();
    wait_until(
        "the leader reports the group broken",
        Duration::from_secs(30),
        || async {
            let (status, body) = readyz(&c, &leader).await;
            status == 503 && body.contains("ranks [1] are not healthy")
        },
    )
    .await;
    // Its sim rank, orphaned by SIGKILL, exits when the leader closes the group link; it
    // holds the captured stderr until then, so the worker is not waited for here.
    drop(worker);
    leader.sigterm();
    let _ = leader.wait_exit(Duration::from_secs(30));
}
