//! Scanner accuracy on the labelled set (tests/support/accuracy.rs, tests/data/accuracy):
//! precision, recall and F1 of the (package, vulnerability) matches, the findings counted twice,
//! and the recorded baseline beside them.
//!
//! `cargo bench -p rampart-scan --bench accuracy` (root filesystem directories; add
//! `-- docker` to scan the same trees as `docker import`ed images of the local daemon).
#![allow(clippy::unwrap_used, reason = "benchmark: a failure is a failed run")]

#[path = "../tests/support/accuracy.rs"]
mod accuracy;

fn main() {
    let docker = std::env::args().any(|a| a == "docker");
    let work = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let score = accuracy::run(work.path(), |image, root| {
        if docker {
            let tag = format!("rampart-test/accuracy-{image}:1");
            accuracy::docker_import(root, &tag);
            format!("docker:{tag}")
        } else {
            format!("dir:{}", root.display())
        }
    });
    let base = accuracy::baseline();
    println!(
        "scanner accuracy ({} images, {} labels, {} findings, {:.1}s, source {})",
        accuracy::IMAGES.len(),
        accuracy::labels().len(),
        score.findings,
        started.elapsed().as_secs_f64(),
        if docker { "docker import" } else { "dir" }
    );
    println!(
        "  precision {:.3}  recall {:.3}  F1 {:.3}  (recorded F1 {:.3})",
        score.precision(),
        score.recall(),
        score.f1(),
        base.f1
    );
    println!(
        "  TP {}  FP {}  FN {}  duplicates {}",
        score.true_positives.len(),
        score.false_positives.len(),
        score.false_negatives.len(),
        score.duplicates
    );
    for k in &score.false_positives {
        println!("  FP {k}");
    }
    for k in &score.false_negatives {
        println!("  FN {k}");
    }
}
