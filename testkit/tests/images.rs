//! The test images build offline and run.

#[test]
fn busybox_image_runs_a_shell() {
    testkit::require!(Docker);
    let image = testkit::busybox_image();
    let c = testkit::TestContainer::run("tk-bb", &[&image, "sleep", "30"]);
    let out = c.exec(&["sh", "-c", "id -u; cat /etc/passwd | head -1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(text.starts_with("0\nroot:x:0:0"), "{text}");
    assert!(c.pid() > 1);
}

#[test]
fn debian_image_has_dpkg_and_apt() {
    testkit::require!(Docker);
    let image = testkit::debian_image();
    let out = testkit::docker([
        "run",
        "--rm",
        &image,
        "sh",
        "-c",
        "dpkg -s apt | grep ^Status",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Status: install ok installed"
    );
}
