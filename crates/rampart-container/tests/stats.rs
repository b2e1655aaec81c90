//! `container.stats` against a real container: the block IO a busybox `dd` does with direct
//! IO is in the events the agent's [`StatsSampler`] emits, whichever cgroup version Docker put
//! the container in (this host: v1 blkio under a hybrid hierarchy).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_container::{ContainerDirectory, ContainerRecord, ProcFs, StatsSampler};
use rampart_event::{Container, ContainerRuntime, Device, ResourceInfo};
use testkit::TestContainer;

const MIB: u64 = 1 << 20;

#[test]
fn stats_carry_the_bytes_and_operations_a_container_writes_to_disk() {
    testkit::require!(Root, Docker);
    let image = testkit::busybox_image();
    // 50 MiB with O_DIRECT (charged to the container's cgroup on v1 too, where buffered
    // writeback is charged to the root cgroup), then a marker, then idle.
    let c = TestContainer::run(
        "rampart-blkio",
        &[
            &image,
            "sh",
            "-c",
            "sleep 2; dd if=/dev/zero of=/tmp/f bs=1M count=50 oflag=direct && touch /tmp/done; sleep 300",
        ],
    );
    let pid: u32 = c.inspect("{{.State.Pid}}").parse().expect("pid");
    let dir = ContainerDirectory::new();
    dir.insert(ContainerRecord {
        container: Arc::new(Container::unnamed(c.id.clone(), ContainerRuntime::Docker)),
        pid,
        upper_dir: None,
        started_at_ns: 0,
    });
    let device = Arc::new(Device {
        hostname: "test".into(),
        region: None,
    });
    let mut sampler = StatsSampler::new(dir, ProcFs::default(), device, 1);
    // The first sample only records counters: before the dd, so the write shows as a rate.
    assert!(sampler.sample().is_empty(), "first sample records only");
    let deadline = Instant::now() + Duration::from_secs(60);
    while testkit::docker(["exec", &c.name, "test", "-e", "/tmp/done"])
        .status
        .code()
        != Some(0)
    {
        assert!(Instant::now() < deadline, "dd did not finish");
        std::thread::sleep(Duration::from_millis(200));
    }
    let events = sampler.sample();
    let e = events
        .iter()
        .find(|e| e.container.as_ref().is_some_and(|k| k.id == c.id))
        .expect("a stats event for the container");
    let r: &ResourceInfo = e.resources.as_ref().expect("resources");
    let written = r.io_write_bytes.expect("io counters readable");
    assert!(written >= 50 * MIB, "write bytes {written} < 50 MiB: {r:?}");
    // Direct IO of 1 MiB blocks: at least one operation per 1 MiB (devices split them).
    assert!(r.io_write_ops.is_some_and(|o| o >= 50), "{r:?}");
    // The whole write happened within this interval.
    let secs = (r.interval_ms as f64 / 1000.0).max(0.001);
    let bps = r.io_write_bps.expect("rate on the second sample");
    assert!(
        bps as f64 * secs >= 0.9 * (50 * MIB) as f64,
        "rate {bps} B/s over {secs} s does not account for 50 MiB: {r:?}"
    );
    assert!(r.io_write_iops.is_some_and(|o| o > 0), "{r:?}");
    // Serialized as additive fields of `resources`.
    let v = serde_json::to_value(e).expect("json");
    assert!(
        v["resources"]["io_write_bytes"].as_u64() >= Some(50 * MIB),
        "{v}"
    );
}
