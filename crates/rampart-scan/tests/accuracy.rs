//! The scanner's quality gate: the labelled accuracy set (tests/support/accuracy.rs) scored
//! against tests/data/accuracy/baseline.json. Fails on any recorded true positive now missed
//! (a new false negative), on F1 below the recorded value, and on a vulnerability counted twice
//! for one package found in several places.
#![allow(clippy::unwrap_used, reason = "tests")]

#[path = "support/accuracy.rs"]
mod accuracy;

use std::path::Path;

fn check(score: &accuracy::Score) {
    let base = accuracy::baseline();
    let lost: Vec<&String> = base
        .true_positives
        .iter()
        .filter(|k| !score.true_positives.contains(*k))
        .collect();
    assert!(lost.is_empty(), "new false negatives: {lost:?}\n{score:#?}");
    assert!(
        score.f1() + 1e-9 >= base.f1,
        "F1 {:.4} fell below the recorded {:.4}\n{score:#?}",
        score.f1(),
        base.f1
    );
    assert_eq!(score.duplicates, 0, "findings counted twice: {score:#?}");
}

#[test]
fn labelled_set_scores_at_least_the_recorded_f1_with_no_new_false_negatives() {
    let work = tempfile::tempdir().unwrap();
    let score = accuracy::run(work.path(), |_, root| format!("dir:{}", root.display()));
    eprintln!(
        "precision {:.3} recall {:.3} F1 {:.3}: {} TP, {} FP, {} FN\nFP {:?}\nFN {:?}",
        score.precision(),
        score.recall(),
        score.f1(),
        score.true_positives.len(),
        score.false_positives.len(),
        score.false_negatives.len(),
        score.false_positives,
        score.false_negatives
    );
    check(&score);
}

/// The same set as images of the local Docker daemon (`docker import` of each root filesystem):
/// the daemon source reads them to the same score.
#[test]
fn labelled_set_as_docker_images_scores_the_same() {
    testkit::require!(Docker);
    let work = tempfile::tempdir().unwrap();
    let score = accuracy::run(work.path(), |image, root: &Path| {
        let tag = format!("rampart-test/accuracy-{image}:1");
        accuracy::docker_import(root, &tag);
        format!("docker:{tag}")
    });
    check(&score);
}

/// One package found in several places of one image is one component with every location.
#[test]
fn one_package_in_several_places_is_one_component_with_its_locations() {
    let work = tempfile::tempdir().unwrap();
    let db = accuracy::database(work.path());
    let reader = rampart_scan::ImageReader::new(rampart_scan::Limits::default());
    let opts = rampart_scan::ScanOptions {
        cache: None,
        refresh: true,
    };
    for (image, name, version, mut expected) in [
        (
            "node",
            "lodash",
            "4.17.20",
            vec![
                "app/node_modules/lodash/package.json",
                "app/package-lock.json",
            ],
        ),
        (
            "python",
            "requests",
            "2.28.1",
            vec![
                "usr/local/lib/python3.11/site-packages/requests-2.28.1.dist-info/METADATA",
                "app/requirements.txt",
            ],
        ),
    ] {
        let root = work.path().join(image);
        accuracy::build(image, &root, work.path());
        let t = rampart_scan::Target::parse(&format!("dir:{}", root.display()));
        let r =
            rampart_scan::scan(&reader, &t, Some(&db), &opts, &rampart_scan::NoProgress).unwrap();
        let pkgs: Vec<_> = r
            .inventory
            .packages
            .iter()
            .filter(|p| p.name == name && p.version == version)
            .collect();
        assert_eq!(pkgs.len(), 1, "{pkgs:#?}");
        // Installed metadata is the primary location, the lock file the other.
        let mut got = vec![pkgs[0].path.as_str()];
        got.extend(pkgs[0].locations.iter().map(|l| l.path.as_str()));
        assert_eq!(got, expected);
        let findings = r
            .matches
            .findings
            .iter()
            .filter(|f| f.package.name == name)
            .count();
        let ids: std::collections::BTreeSet<_> = r
            .matches
            .findings
            .iter()
            .filter(|f| f.package.name == name)
            .map(|f| f.vulnerability_id.clone())
            .collect();
        assert_eq!(findings, ids.len(), "each vulnerability once");
        // The SBOMs list every location.
        let cdx: serde_json::Value =
            serde_json::from_str(&rampart_scan::render_cyclonedx(&r)).unwrap();
        let comp = cdx["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name && c["version"] == version)
            .unwrap();
        let occ: Vec<&str> = comp["evidence"]["occurrences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["location"].as_str().unwrap())
            .collect();
        assert_eq!(occ, expected);
        let spdx = rampart_scan::render_spdx(&r);
        expected.sort();
        for p in &expected {
            assert!(spdx.contains(p), "{p} not in the SPDX document");
        }
    }
}
