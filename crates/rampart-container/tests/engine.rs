//! The Docker boundary against a real dockerd: the operations other crates use, and the one
//! events subscription shared by every subscriber of a client.

use std::path::Path;
use std::time::Duration;

use rampart_container::{ContainerEvent, ContainerEvents, DockerClient, DEFAULT_SOCKET};

/// Waits (bounded) for `action` on container `id` in `events`.
async fn wait_for(events: &mut ContainerEvents, id: &str, action: &str) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ev = match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Some(ev)) => ev,
            _ => return false,
        };
        if let ContainerEvent::Message(m) = ev {
            let who = m.actor.as_ref().and_then(|a| a.id.as_deref());
            if who == Some(id) && m.action.as_deref() == Some(action) {
                return true;
            }
        }
    }
}

#[tokio::test]
async fn operations_and_one_events_subscription_for_every_subscriber() {
    testkit::require!(Root, Docker);
    let image = testkit::busybox_image();
    let docker = DockerClient::connect(Path::new(DEFAULT_SOCKET))
        .await
        .expect("dockerd answers");
    // Two subscribers, one of them on a clone (as the agent's Docker watcher and its policy
    // watcher hold clones of one client).
    let mut first = docker.subscribe();
    let clone = docker.clone();
    let mut second = clone.subscribe();

    let c = testkit::TestContainer::run("rampart-engine", &[&image, "sleep", "300"]);
    assert!(
        wait_for(&mut first, &c.id, "start").await,
        "first subscriber"
    );
    assert!(
        wait_for(&mut second, &c.id, "start").await,
        "second subscriber"
    );

    let inspect = docker.inspect_container(&c.name).await.expect("inspect");
    assert_eq!(inspect.id.as_deref(), Some(c.id.as_str()));
    let listed = docker.list_containers(false).await.expect("list");
    assert!(listed
        .iter()
        .any(|s| s.id.as_deref() == Some(c.id.as_str())));

    docker.pause(&c.id).await.expect("pause");
    assert_eq!(c.inspect("{{.State.Status}}"), "paused");
    docker.unpause(&c.id).await.expect("unpause");
    assert_eq!(c.inspect("{{.State.Status}}"), "running");
    docker.kill(&c.id, "KILL").await.expect("kill");
    assert!(wait_for(&mut first, &c.id, "die").await);
    assert_eq!(c.inspect("{{.State.Running}}"), "false");

    let info = docker.info().await.expect("info");
    assert!(info.id.is_some());
    assert!(docker
        .version()
        .await
        .expect("version")
        .api_version
        .is_some());

    // Errors keep the daemon's answer: a missing container is a 404.
    let err = docker
        .inspect_container("rampart-no-such-container-7f3a")
        .await
        .expect_err("no such container");
    assert!(err.is_not_found(), "{err}");
    assert!(
        err.to_string().contains("rampart-no-such-container-7f3a"),
        "{err}"
    );
}
