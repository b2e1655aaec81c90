//! Secrets (masked, with line and layer, including ones deleted by a later layer), crypto-miners
//! (built-in YARA rules on a compiled binary, a script and a config; a user rule file), setuid and
//! world-writable files, image configuration and minimality, on archives built here and on the
//! Debian image (which must show no secret and no malware: false positives are defects too).
#![allow(clippy::unwrap_used, reason = "tests")]

mod support;

use std::process::Command;

use rampart_event::Severity;
use rampart_scan::{
    ContentChecks, Finding, FindingKind, ImageReader, Inventory, Limits, NoProgress, Target,
};
use support::{config, docker_save, layer, E};

fn read_layers(layers: &[Vec<u8>], run: serde_json::Value) -> Inventory {
    let dir = tempfile::tempdir().unwrap();
    let diffs: Vec<&[u8]> = layers.iter().map(Vec::as_slice).collect();
    let cfg = config(&diffs, run);
    let path = support::write(dir.path(), "image.tar", &docker_save(layers, &cfg));
    ImageReader::new(Limits::default())
        .read(&Target::Archive(path), &NoProgress)
        .unwrap()
}

fn of(inv: &Inventory, kind: FindingKind) -> Vec<&Finding> {
    inv.findings.iter().filter(|f| f.kind == kind).collect()
}

const FAKE_KEY: &str = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAtestkeymaterialnotrealatallxxxxxxxxxxxxxxxxxxxx\n-----END RSA PRIVATE KEY-----\n";

#[test]
fn secrets_are_found_masked_and_deleted_ones_still_reported() {
    let l1 = layer(&[
        E::Dir("app"),
        E::File(
            "app/config.yml",
            b"server:\n  port: 8080\ndatabase:\n  url: postgres://app:Sup3rS3cretPw@db:5432/app\naws_access_key_id: AKIAQ3EGRBVN5L7XWZ6P\n".to_vec(),
        ),
        E::File("app/README.md", b"set password: ${DB_PASSWORD} in the environment\n".to_vec()),
    ]);
    let l2 = layer(&[
        E::Dir("root"),
        E::Dir("root/.ssh"),
        E::FileMode("root/.ssh/id_rsa", FAKE_KEY.as_bytes().to_vec(), 0o600),
    ]);
    // The third layer deletes the config: its secrets still ship in layer 1.
    let l3 = layer(&[E::Dir("app"), E::File("app/.wh.config.yml", vec![])]);
    let run = serde_json::json!({
        "Env": ["PATH=/usr/bin", "DB_PASSWORD=hunter2hunter2", "GITHUB=ghp_abcdefghijklmnopqrstuvwxyz0123456789"],
        "Labels": {"maintainer": "ops", "api_token": "tok_1234567890abcdef"},
        "ExposedPorts": {"22/tcp": {}},
        "User": "",
    });
    let inv = read_layers(&[l1, l2, l3], run);
    let secrets: Vec<(String, String, Option<usize>, String, bool)> = of(&inv, FindingKind::Secret)
        .into_iter()
        .map(|f| {
            (
                f.rule.clone(),
                f.path.clone().unwrap(),
                f.line,
                f.evidence.clone().unwrap(),
                f.removed_in_later_layer,
            )
        })
        .collect();
    let s = |x: &str| x.to_string();
    assert_eq!(
        secrets,
        [
            (
                s("secret/aws-access-key-id"),
                s("app/config.yml"),
                Some(5),
                s("AKIA****************"),
                true
            ),
            (
                s("secret/private-key"),
                s("root/.ssh/id_rsa"),
                Some(1),
                s("-----BEGIN RSA PRIVATE KEY----- (key material not shown)"),
                false
            ),
            (
                s("secret/url-credentials"),
                s("app/config.yml"),
                Some(4),
                s("Sup3*********"),
                true
            ),
        ]
    );
    let by_layer: Vec<&str> = of(&inv, FindingKind::Secret)
        .iter()
        .map(|f| f.layer.as_deref().unwrap())
        .collect();
    assert_eq!(by_layer[0], inv.image.layers[0].diff_id);
    assert_eq!(by_layer[1], inv.image.layers[1].diff_id);
    // Nothing in any output is the secret itself.
    let all = serde_json::to_string(&inv).unwrap();
    for secret in [
        "Sup3rS3cretPw",
        "AKIAQ3EGRBVN5L7XWZ6P",
        "testkeymaterial",
        "hunter2hunter2",
        "ghp_abcdefghijkl",
        "tok_1234567890",
    ] {
        assert!(!all.contains(secret), "{secret} leaked into the inventory");
    }
    // The configuration.
    let cfg: Vec<(String, Option<String>)> = of(&inv, FindingKind::Config)
        .into_iter()
        .map(|f| (f.rule.clone(), f.evidence.clone()))
        .collect();
    assert!(cfg.contains(&(s("config/root-user"), None)), "{cfg:?}");
    assert!(cfg.contains(&(s("config/ssh-server"), None)), "{cfg:?}");
    assert!(cfg.contains(&(s("config/no-healthcheck"), None)), "{cfg:?}");
    assert!(
        cfg.contains(&(
            s("config/secret-env"),
            Some(s("DB_PASSWORD=hunt**********"))
        )),
        "{cfg:?}"
    );
    assert!(
        cfg.contains(&(
            s("config/secret-env"),
            Some(s("GITHUB=ghp_****************"))
        )),
        "{cfg:?}"
    );
    assert!(
        cfg.contains(&(
            s("config/secret-label"),
            Some(s("api_token=tok_****************"))
        )),
        "{cfg:?}"
    );
}

#[test]
fn file_modes_and_minimality() {
    let l = layer(&[
        E::Dir("bin"),
        E::FileMode("bin/sh", b"#!shell".to_vec(), 0o755),
        E::Dir("usr"),
        E::Dir("usr/bin"),
        E::FileMode("usr/bin/passwd", vec![1; 10], 0o4755),
        E::FileMode("usr/bin/gcc", vec![1; 10], 0o755),
        E::FileMode("usr/bin/apt-get", vec![1; 10], 0o755),
        E::Dir("opt"),
        E::FileMode("opt/helper", vec![1; 10], 0o2755),
        E::FileMode("opt/shared.conf", b"x=1\n".to_vec(), 0o666),
        E::Dir("tmp"),
    ]);
    // A world-writable directory without the sticky bit, and /tmp with it (fine).
    let l2 = {
        let mut b = tar::Builder::new(Vec::new());
        for (p, m) in [("srv/", 0o777), ("tmp/", 0o1777)] {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_path(p).unwrap();
            h.set_mode(m);
            h.set_size(0);
            h.set_cksum();
            b.append(&h, &[][..]).unwrap();
        }
        b.into_inner().unwrap()
    };
    let inv = read_layers(
        &[l, l2],
        serde_json::json!({"User": "app", "Healthcheck": {"Test": ["CMD", "true"]}}),
    );
    let modes: Vec<(String, String, Severity)> = inv
        .findings
        .iter()
        .filter(|f| matches!(f.kind, FindingKind::Setuid | FindingKind::WorldWritable))
        .map(|f| (f.rule.clone(), f.path.clone().unwrap(), f.severity))
        .collect();
    let s = |x: &str| x.to_string();
    let mut modes = modes;
    modes.sort();
    assert_eq!(
        modes,
        [
            (s("file/setuid"), s("opt/helper"), Severity::Medium),
            (s("file/setuid"), s("usr/bin/passwd"), Severity::Low),
            (
                s("file/world-writable"),
                s("opt/shared.conf"),
                Severity::Medium
            ),
            (s("file/world-writable"), s("srv"), Severity::Medium),
        ]
    );
    let min: Vec<(String, String)> = of(&inv, FindingKind::Minimality)
        .into_iter()
        .map(|f| (f.rule.clone(), f.evidence.clone().unwrap()))
        .collect();
    assert_eq!(
        min,
        [
            (s("minimality/compiler"), s("usr/bin/gcc")),
            (s("minimality/package-manager"), s("usr/bin/apt-get")),
            (s("minimality/shell"), s("bin/sh")),
        ]
    );
    assert!(
        of(&inv, FindingKind::Config).is_empty(),
        "non-root user, healthcheck set"
    );
}

/// A C program carrying what identifies XMRig (its user agent format, algorithm names, the
/// donate-level option); not a miner, but indistinguishable to signature rules, as intended.
fn miner_like_binary(dir: &std::path::Path) -> Vec<u8> {
    let src = dir.join("m.c");
    std::fs::write(
        &src,
        "#include <stdio.h>\nconst char *ua = \"XMRig/%s (Linux x86_64) libuv/%s\";\nconst char *algos[] = {\"cryptonight\", \"rx/0\", \"randomx\"};\nconst char *opt = \"--donate-level\";\nint main(void) { printf(\"%s %s %s\\n\", ua, algos[0], opt); return 0; }\n",
    )
    .unwrap();
    let out = dir.join("m");
    let st = Command::new("cc")
        .arg("-O0")
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success(), "cc (build-essential) is needed");
    std::fs::read(out).unwrap()
}

#[test]
fn miners_are_found_by_the_builtin_and_user_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = miner_like_binary(tmp.path());
    let l = layer(&[
        E::Dir("opt"),
        E::FileMode("opt/.cache-daemon", bin, 0o755),
        E::FileMode(
            "opt/start.sh",
            b"#!/bin/sh\n# warm up\nexec /opt/.cache-daemon -o stratum+tcp://pool.supportxmr.com:3333 -u 44AFFq5k\n".to_vec(),
            0o755,
        ),
        E::File(
            "opt/config.json",
            b"{\n  \"donate-level\": 1,\n  \"pools\": [{\"url\": \"gulf.moneroocean.stream:10128\", \"algo\": \"rx/0\"}]\n}\n".to_vec(),
        ),
        E::File("opt/notes.txt", b"our crypto library uses randomx-like hashing\n".to_vec()),
    ]);
    let inv = read_layers(&[l], serde_json::json!({"User": "1000"}));
    let mut got: Vec<(String, String, Severity)> = of(&inv, FindingKind::Malware)
        .into_iter()
        .map(|f| (f.rule.clone(), f.path.clone().unwrap(), f.severity))
        .collect();
    got.sort();
    let s = |x: &str| x.to_string();
    assert_eq!(
        got,
        [
            (
                s("rampart_mining_pool_domain"),
                s("opt/config.json"),
                Severity::High
            ),
            (
                s("rampart_mining_pool_domain"),
                s("opt/start.sh"),
                Severity::High
            ),
            (s("rampart_stratum_url"), s("opt/start.sh"), Severity::High),
            (
                s("rampart_xmrig"),
                s("opt/.cache-daemon"),
                Severity::Critical
            ),
            (s("rampart_xmrig"), s("opt/config.json"), Severity::Critical),
        ]
    );
    let stratum = inv
        .findings
        .iter()
        .find(|f| f.rule == "rampart_stratum_url")
        .unwrap();
    assert_eq!(stratum.line, Some(3));
    assert_eq!(
        stratum.evidence.as_deref(),
        Some("stratum+tcp://pool.supportxmr.com:3333")
    );

    // A user rule file adds its own rules; a broken one is a clear error.
    let rules = tmp.path().join("custom.yar");
    std::fs::write(
        &rules,
        "rule acme_backdoor { meta: description = \"ACME backdoor\" severity = \"critical\" strings: $a = \"warm up\" condition: $a }\n",
    )
    .unwrap();
    let checks = ContentChecks {
        yara_files: vec![rules.clone()],
        ..ContentChecks::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let data = layer(&[
        E::Dir("opt"),
        E::FileMode("opt/start.sh", b"#!/bin/sh\n# warm up\n".to_vec(), 0o755),
    ]);
    let cfg = config(&[&data], serde_json::json!({}));
    let path = support::write(dir.path(), "i.tar", &docker_save(&[data], &cfg));
    let inv = ImageReader::with_checks(Limits::default(), &checks)
        .unwrap()
        .read(&Target::Archive(path), &NoProgress)
        .unwrap();
    let f = inv
        .findings
        .iter()
        .find(|f| f.rule == "acme_backdoor")
        .unwrap();
    assert_eq!(
        (f.title.as_str(), f.severity, f.line),
        ("ACME backdoor", Severity::Critical, Some(2))
    );
    std::fs::write(&rules, "rule broken { condition: $nope }\n").unwrap();
    let err = ImageReader::with_checks(Limits::default(), &checks).unwrap_err();
    assert!(err.to_string().contains("custom.yar"), "{err}");
}

#[test]
fn debian_image_has_no_secret_or_malware_false_positives() {
    testkit::require!(Docker);
    let inv = ImageReader::new(Limits::default())
        .read(&Target::Daemon(testkit::debian_image()), &NoProgress)
        .unwrap();
    let noise: Vec<&Finding> = inv
        .findings
        .iter()
        .filter(|f| matches!(f.kind, FindingKind::Secret | FindingKind::Malware))
        .collect();
    assert!(noise.is_empty(), "{noise:#?}");
    let rules: Vec<&str> = inv.findings.iter().map(|f| f.rule.as_str()).collect();
    assert!(rules.contains(&"config/root-user"));
    assert!(rules.contains(&"minimality/shell"));
    assert!(rules.contains(&"minimality/package-manager"));
    let setuid: Vec<&str> = inv
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::Setuid)
        .map(|f| f.path.as_deref().unwrap())
        .collect();
    for p in ["usr/bin/su", "usr/bin/passwd", "usr/bin/mount"] {
        assert!(setuid.contains(&p), "{p} in {setuid:?}");
    }
}
