//! SBOMs: CycloneDX 1.5 JSON and SPDX 2.3 JSON, both valid against the official schemas (the
//! tests validate them). Every package keeps its purl, the file it was found in and its layer.
//!
//! Both documents are deterministic for one inventory and clock: the serial number and the
//! document namespace derive from the image id (or target) by SHA-256.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::ScanReport;

/// A UUID-shaped (version 4 layout) id derived from `seed`.
fn uuid_from(seed: &str) -> String {
    let h = Sha256::digest(seed.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

/// RFC 3339 UTC timestamp (seconds) of the Unix time `secs`.
pub(crate) fn rfc3339(secs: i64) -> String {
    // Howard Hinnant's days-to-civil algorithm: no calendar dependency for one function.
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn seed(r: &ScanReport) -> String {
    r.inventory
        .image
        .id
        .clone()
        .unwrap_or_else(|| r.inventory.image.target.clone())
}

/// CycloneDX 1.5 JSON.
pub fn render_cyclonedx(r: &ScanReport) -> String {
    let inv = &r.inventory;
    let image_ref = format!("image:{}", seed(r));
    let components: Vec<Value> = inv
        .packages
        .iter()
        .map(|p| {
            let mut props = vec![
                json!({"name": "rampart:package:type", "value": p.kind.as_str()}),
                json!({"name": "rampart:package:path", "value": p.path}),
            ];
            if let Some(l) = &p.layer {
                props.push(json!({"name": "rampart:package:layer", "value": l}));
            }
            if let Some(s) = &p.source_name {
                props.push(json!({"name": "rampart:package:source", "value": s}));
            }
            if !p.ecosystem.is_empty() {
                props.push(json!({"name": "rampart:package:ecosystem", "value": p.ecosystem}));
            }
            for l in &p.locations {
                props.push(json!({"name": "rampart:package:path", "value": l.path}));
            }
            // Every place the package was found (CycloneDX 1.5 `evidence.occurrences`).
            let occurrences: Vec<Value> = std::iter::once(json!({"location": p.path}))
                .chain(p.locations.iter().map(|l| json!({"location": l.path})))
                .collect();
            let mut c = json!({
                "type": "library",
                "bom-ref": format!("{}#{}", p.purl, p.path),
                "name": p.name,
                "version": p.version,
                "purl": p.purl,
                "properties": props,
                "evidence": {"occurrences": occurrences},
            });
            if !p.licenses.is_empty() {
                c["licenses"] = Value::Array(
                    p.licenses
                        .iter()
                        .map(|l| json!({"license": {"name": l}}))
                        .collect(),
                );
            }
            c
        })
        .collect();
    let mut meta_component = json!({
        "type": "container",
        "bom-ref": image_ref,
        "name": inv.image.target,
    });
    if let Some(id) = &inv.image.id {
        meta_component["version"] = json!(id);
    }
    let mut doc = json!({
        "$schema": "http://cyclonedx.org/schema/bom-1.5.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": format!("urn:uuid:{}", uuid_from(&seed(r))),
        "version": 1,
        "metadata": {
            "timestamp": rfc3339(now_secs()),
            "tools": {"components": [{"type": "application", "name": "rampart", "version": env!("CARGO_PKG_VERSION")}]},
            "component": meta_component,
        },
        "components": components,
        "dependencies": [{
            "ref": image_ref,
            "dependsOn": inv.packages.iter().map(|p| format!("{}#{}", p.purl, p.path)).collect::<Vec<_>>(),
        }],
    });
    if let Some(os) = &inv.os {
        doc["metadata"]["component"]["properties"] = json!([
            {"name": "rampart:os:id", "value": os.id},
            {"name": "rampart:os:version", "value": os.version_id},
        ]);
    }
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// An SPDX id made of the allowed characters only.
fn spdx_id(prefix: &str, n: usize, name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("SPDXRef-{prefix}-{n}-{clean}")
}

/// SPDX 2.3 JSON.
pub fn render_spdx(r: &ScanReport) -> String {
    let inv = &r.inventory;
    let image_id = "SPDXRef-Image".to_string();
    let mut packages = vec![json!({
        "name": inv.image.target,
        "SPDXID": image_id,
        "versionInfo": inv.image.id.clone().unwrap_or_default(),
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "CONTAINER",
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": image_id,
    })];
    for (n, p) in inv.packages.iter().enumerate() {
        let id = spdx_id("Package", n, &p.name);
        let mut source = format!("found in {}", p.path);
        if let Some(l) = &p.layer {
            source.push_str(&format!(" (layer {l})"));
        }
        for loc in &p.locations {
            source.push_str(&format!(", {}", loc.path));
            if let Some(l) = &loc.layer {
                source.push_str(&format!(" (layer {l})"));
            }
        }
        let mut pkg = json!({
            "name": p.name,
            "SPDXID": id,
            "versionInfo": p.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "sourceInfo": source,
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": p.purl,
            }],
        });
        if !p.licenses.is_empty() {
            pkg["comment"] = json!(format!("declared licence: {}", p.licenses.join(", ")));
        }
        packages.push(pkg);
        relationships.push(json!({
            "spdxElementId": image_id,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    let doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": inv.image.target,
        "documentNamespace": format!("https://rampart-sec.github.io/spdx/{}", uuid_from(&seed(r))),
        "creationInfo": {
            "created": rfc3339(now_secs()),
            "creators": [format!("Tool: rampart-{}", env!("CARGO_PKG_VERSION"))],
        },
        "packages": packages,
        "relationships": relationships,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn uuids_are_v4_shaped_and_stable() {
        let u = uuid_from("x");
        assert_eq!(u, uuid_from("x"));
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }
}
