//! SBOMs validate against the official schemas (vendored in tests/data/schemas), for the Debian
//! image and the language image; SARIF names rules and locations.
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::path::Path;

use rampart_scan::{
    match_inventory, render_cyclonedx, render_sarif, render_spdx, ImageReader, Inventory, Limits,
    MatchReport, NoProgress, ScanReport, Target, VulnDb,
};
use serde_json::Value;

fn schema(rel: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/schemas")
        .join(rel);
    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
}

fn assert_valid(validator: &jsonschema::Validator, doc: &Value, what: &str) {
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .take(20)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} is invalid:\n{}",
        errors.join("\n")
    );
}

fn cyclonedx_validator() -> jsonschema::Validator {
    let registry = jsonschema::Registry::new()
        .add(
            "http://cyclonedx.org/schema/spdx.SNAPSHOT.schema.json",
            schema("cyclonedx/spdx.SNAPSHOT.schema.json"),
        )
        .unwrap()
        .add(
            "http://cyclonedx.org/schema/jsf-0.82.SNAPSHOT.schema.json",
            schema("cyclonedx/jsf-0.82.SNAPSHOT.schema.json"),
        )
        .unwrap()
        .prepare()
        .unwrap();
    jsonschema::options()
        .with_registry(&registry)
        .should_validate_formats(true)
        .build(&schema("cyclonedx/bom-1.5.SNAPSHOT.schema.json"))
        .unwrap()
}

fn spdx_validator() -> jsonschema::Validator {
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema("spdx/spdx-schema.json"))
        .unwrap()
}

fn report(inv: Inventory, matches: MatchReport) -> ScanReport {
    ScanReport {
        inventory: inv,
        matches,
        cached: false,
        db: None,
        not_matched: None,
    }
}

fn check_sboms(inv: &Inventory) {
    let r = report(inv.clone(), MatchReport::default());
    let cdx: Value = serde_json::from_str(&render_cyclonedx(&r)).unwrap();
    assert_valid(&cyclonedx_validator(), &cdx, "CycloneDX");
    let comps = cdx["components"].as_array().unwrap();
    assert_eq!(comps.len(), inv.packages.len());
    for (c, p) in comps.iter().zip(&inv.packages) {
        assert_eq!(c["purl"], p.purl.as_str());
        assert!(c["properties"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["name"] == "rampart:package:path" && x["value"] == p.path.as_str()));
    }
    let spdx: Value = serde_json::from_str(&render_spdx(&r)).unwrap();
    assert_valid(&spdx_validator(), &spdx, "SPDX");
    assert_eq!(
        spdx["packages"].as_array().unwrap().len(),
        inv.packages.len() + 1
    );
    assert_eq!(
        spdx["relationships"].as_array().unwrap().len(),
        inv.packages.len() + 1
    );
    // The validators are not vacuous: a broken document fails.
    let mut broken = cdx.clone();
    broken["components"][0]["type"] = Value::from("not-a-type");
    assert!(!cyclonedx_validator().is_valid(&broken));
    let mut broken = spdx.clone();
    broken["packages"][1]["SPDXID"] = Value::from("no spaces allowed");
    assert!(!spdx_validator().is_valid(&broken));
}

#[test]
fn debian_sboms_validate() {
    testkit::require!(Docker);
    testkit::debian_image();
    let inv = ImageReader::new(Limits::default())
        .read(
            &Target::Rootfs(testkit::cache_dir().join("debian-bookworm")),
            &NoProgress,
        )
        .unwrap();
    assert!(inv.packages.len() > 70);
    check_sboms(&inv);
}

#[test]
fn language_image_sboms_validate_and_sarif_locates_findings() {
    testkit::require!(Docker);
    let tag = support::fixtures::lang_image();
    let inv = ImageReader::new(Limits::default())
        .read(&Target::Daemon(tag), &NoProgress)
        .unwrap();
    check_sboms(&inv);
    let data = tempfile::tempdir().unwrap();
    std::fs::write(
        data.path().join("r.json"),
        serde_json::json!({"id": "GHSA-35jh-r3h4-6jhm", "modified": "2024-01-01T00:00:00Z",
            "summary": "Command injection in lodash", "aliases": ["CVE-2021-23337"],
            "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:H/UI:N/S:U/C:H/I:H/A:H"}],
            "references": [{"type": "ADVISORY", "url": "https://nvd.nist.gov/vuln/detail/CVE-2021-23337"}],
            "affected": [{"package": {"ecosystem": "npm", "name": "lodash"},
                "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "4.17.21"}]}]}]})
        .to_string(),
    )
    .unwrap();
    let dbdir = tempfile::tempdir().unwrap();
    let mut db = VulnDb::open_or_create(&dbdir.path().join("v.db")).unwrap();
    db.import(data.path()).unwrap();
    let matches = match_inventory(&db, &inv, 1).unwrap();
    // lodash is in the lock file and in node_modules: one package, one finding.
    assert_eq!(matches.findings.len(), 1);
    let sarif: Value = serde_json::from_str(&render_sarif(&report(inv, matches))).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    let run = &sarif["runs"][0];
    let rule = run["tool"]["driver"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "GHSA-35jh-r3h4-6jhm")
        .unwrap();
    assert_eq!(rule["properties"]["security-severity"], "7.2");
    let vulns: Vec<&Value> = run["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["ruleId"] == "GHSA-35jh-r3h4-6jhm")
        .collect();
    assert_eq!(vulns[0]["level"], "error");
    // The image's own findings are results too (the busybox base runs as root).
    assert!(run["results"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["ruleId"] == "config/root-user"));
    assert_eq!(vulns.len(), 1);
    let mut uris: Vec<&str> = vulns[0]["locations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            l["physicalLocation"]["artifactLocation"]["uri"]
                .as_str()
                .unwrap()
        })
        .collect();
    uris.sort();
    assert_eq!(
        uris,
        [
            "app/web/node_modules/lodash/package.json",
            "app/web/package-lock.json"
        ]
    );
}
