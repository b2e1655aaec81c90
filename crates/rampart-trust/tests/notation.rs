//! Notation (Notary Project) signatures through the trust policy, against a real registry
//! (Debian's `docker-registry`, distribution 2.8: no referrers API, so the OCI 1.1 referrers
//! tag `sha256-<hex>` is used, as Notation does on such registries).
//!
//! The Notation CLI cannot be installed here (not in Debian, no Go module proxy), so the
//! signature is made by OpenSSL (an independent X.509 and RSA-PSS implementation) following the
//! Notary Project's JWS envelope specification (and its COSE one, the `COSE_Sign1` structured
//! by the `coset` crate); the envelope formats themselves are pinned by signatures Notation
//! 1.0.0 produced (the unit tests of `notation.rs`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use rampart_trust::{sha256_digest, ImageRef, Registry, SignatureForm, TrustPolicy};
use serde_json::json;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// The registry process, its storage (kept until the end) and its port.
struct Reg(
    Child,
    #[allow(dead_code, reason = "owns the storage directory")] tempfile::TempDir,
    u16,
);

impl Drop for Reg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn registry() -> Reg {
    let bin = Path::new("/usr/bin/docker-registry");
    assert!(
        bin.exists(),
        "docker-registry is not installed (scripts/setup installs it)"
    );
    let dir = tempfile::tempdir().expect("tmp");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    std::fs::write(
        dir.path().join("config.yml"),
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        ),
    )
    .expect("config");
    let child = Command::new(bin)
        .args([
            "serve",
            &dir.path().join("config.yml").display().to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry");
    let end = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "docker-registry did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    Reg(child, dir, port)
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let o = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

/// A root CA, an intermediate CA (no extended key usage, as CAs commonly have) and a
/// code-signing leaf (RSA 2048), by OpenSSL: (root, intermediate, leaf, leaf key).
fn pki(d: &Path, cn: &str) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    let cfg = d.join(format!("{cn}.cnf"));
    std::fs::write(
        &cfg,
        format!(
            "[req]\ndistinguished_name=dn\nprompt=no\n[dn]\nC=US\nO=Rampart Test\nCN={cn}\n\
             [ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign\n\
             [leaf]\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=codeSigning\n"
        ),
    )
    .expect("cnf");
    let p = |n: &str| d.join(format!("{cn}-{n}")).display().to_string();
    let c = cfg.display().to_string();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &p("root.key"),
        "-out",
        &p("root.pem"),
        "-days",
        "2",
        "-config",
        &c,
        "-extensions",
        "ca",
        "-subj",
        &format!("/C=US/O=Rampart Test/CN={cn} root"),
    ]);
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &p("int.key"),
        "-out",
        &p("int.csr"),
        "-config",
        &c,
        "-subj",
        &format!("/C=US/O=Rampart Test/CN={cn} intermediate"),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p("int.csr"),
        "-CA",
        &p("root.pem"),
        "-CAkey",
        &p("root.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &c,
        "-extensions",
        "ca",
        "-out",
        &p("int.pem"),
    ]);
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &p("leaf.key"),
        "-out",
        &p("leaf.csr"),
        "-config",
        &c,
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p("leaf.csr"),
        "-CA",
        &p("int.pem"),
        "-CAkey",
        &p("int.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &c,
        "-extensions",
        "leaf",
        "-out",
        &p("leaf.pem"),
    ]);
    (
        p("root.pem").into(),
        p("int.pem").into(),
        p("leaf.pem").into(),
        p("leaf.key").into(),
    )
}

fn pem_der(pem: &Path) -> Vec<u8> {
    let text = std::fs::read_to_string(pem).expect("pem");
    let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(b64).expect("base64")
}

/// A Notation JWS envelope (PS256) over `digest`, signed by `key` with the chain `certs`.
fn envelope(d: &Path, digest: &str, size: usize, key: &Path, certs: &[&Path]) -> Vec<u8> {
    let protected = json!({
        "alg": "PS256",
        "crit": ["io.cncf.notary.signingScheme"],
        "cty": "application/vnd.cncf.notary.payload.v1+json",
        "io.cncf.notary.signingScheme": "notary.x509",
        "io.cncf.notary.signingTime": "2026-01-01T00:00:00Z",
    });
    let payload =
        json!({"targetArtifact": {"digest": digest, "mediaType": OCI_MANIFEST, "size": size}});
    let (p, pl) = (
        URL_SAFE_NO_PAD.encode(protected.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string()),
    );
    let input = d.join("signing-input");
    std::fs::write(&input, format!("{p}.{pl}")).expect("w");
    let sig = openssl(&[
        "dgst",
        "-sha256",
        "-sign",
        &key.display().to_string(),
        "-sigopt",
        "rsa_padding_mode:pss",
        "-sigopt",
        "rsa_pss_saltlen:32",
        &input.display().to_string(),
    ]);
    json!({
        "payload": pl,
        "protected": p,
        "header": {"x5c": certs.iter().map(|c| STANDARD.encode(pem_der(c))).collect::<Vec<_>>(),
                   "io.cncf.notary.signingAgent": "rampart-test/openssl"},
        "signature": URL_SAFE_NO_PAD.encode(sig),
    })
    .to_string()
    .into_bytes()
}

/// A Notation COSE envelope (`COSE_Sign1`, PS256) over `digest`, structured by `coset` from the
/// Notary Project's COSE envelope specification and signed by OpenSSL over its
/// `Sig_structure`.
fn cose_envelope(d: &Path, digest: &str, size: usize, key: &Path, certs: &[&Path]) -> Vec<u8> {
    use coset::cbor::value::Value;
    use coset::{iana, CborSerializable, Label, TaggedCborSerializable};
    let text = |s: &str| Label::Text(s.to_string());
    let mut protected = coset::HeaderBuilder::new()
        .algorithm(iana::Algorithm::PS256)
        .add_critical_label(coset::RegisteredLabelWithPrivate::Text(
            "io.cncf.notary.signingScheme".into(),
        ))
        .content_type("application/vnd.cncf.notary.payload.v1+json".into())
        .build();
    protected.rest = vec![
        (
            text("io.cncf.notary.signingScheme"),
            Value::Text("notary.x509".into()),
        ),
        (
            text("io.cncf.notary.signingTime"),
            Value::Tag(1, Box::new(Value::Integer(1_767_225_600.into()))),
        ),
    ];
    let unprotected = coset::Header {
        rest: vec![
            (
                Label::Int(iana::HeaderParameter::X5Chain as i64),
                Value::Array(certs.iter().map(|c| Value::Bytes(pem_der(c))).collect()),
            ),
            (
                text("io.cncf.notary.signingAgent"),
                Value::Text("rampart-test/openssl".into()),
            ),
        ],
        ..Default::default()
    };
    let payload =
        json!({"targetArtifact": {"digest": digest, "mediaType": OCI_MANIFEST, "size": size}});
    let unsigned = coset::CoseSign1Builder::new()
        .protected(protected)
        .unprotected(unprotected)
        .payload(payload.to_string().into_bytes())
        .build();
    // The protected header as it will be sent (coset keeps these bytes when it parses).
    let unsigned = coset::CoseSign1::from_slice(&unsigned.to_vec().expect("cbor")).expect("cose");
    let input = d.join("cose-signing-input");
    std::fs::write(&input, unsigned.tbs_data(&[])).expect("w");
    let sig = openssl(&[
        "dgst",
        "-sha256",
        "-sign",
        &key.display().to_string(),
        "-sigopt",
        "rsa_padding_mode:pss",
        "-sigopt",
        "rsa_pss_saltlen:32",
        &input.display().to_string(),
    ]);
    let mut signed = unsigned;
    signed.signature = sig;
    signed.to_tagged_vec().expect("cbor")
}

/// Pushes a one-layer image; returns its manifest digest and size.
fn push_image(reg: &Registry, repo: &str, tag: &str, content: &[u8]) -> (String, usize) {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let cd = reg.put_blob(repo, config).expect("config");
    let ld = reg.put_blob(repo, content).expect("layer");
    let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": content.len()}]})
    .to_string();
    let d = reg
        .put_manifest(repo, tag, OCI_MANIFEST, m.as_bytes())
        .expect("manifest");
    (d, m.len())
}

/// Pushes `env` as a Notation signature of `digest` and lists it in the referrers tag.
fn push_signature(reg: &Registry, repo: &str, digest: &str, size: usize, env: &[u8]) {
    push_signature_as(reg, repo, digest, size, env, "application/jose+json");
}

/// [`push_signature`] with the envelope's media type.
fn push_signature_as(
    reg: &Registry,
    repo: &str,
    digest: &str,
    size: usize,
    env: &[u8],
    media_type: &str,
) {
    let empty = reg.put_blob(repo, b"{}").expect("empty");
    let ed = reg.put_blob(repo, env).expect("envelope");
    let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.cncf.notary.signature",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": media_type, "digest": ed, "size": env.len()}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": digest, "size": size}})
    .to_string();
    let md = sha256_digest(m.as_bytes());
    reg.put_manifest(repo, &md, OCI_MANIFEST, m.as_bytes())
        .expect("signature manifest");
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{
        "mediaType": OCI_MANIFEST, "digest": md, "size": m.len(),
        "artifactType": "application/vnd.cncf.notary.signature"}]})
    .to_string();
    let tag = format!("sha256-{}", digest.trim_start_matches("sha256:"));
    reg.put_manifest(repo, &tag, OCI_INDEX, index.as_bytes())
        .expect("referrers tag");
}

#[test]
fn notation_signatures_are_accepted_by_the_trust_policy() {
    let r = registry();
    let host = format!("127.0.0.1:{}", r.2);
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let reg = Registry::new(&host);
    let (ca, intermediate, leaf, key) = pki(d, "notation signer");
    let (other_ca, ..) = pki(d, "stranger");

    let (signed, size) = push_image(&reg, "n/app", "v1", b"signed layer");
    let env = envelope(d, &signed, size, &key, &[&leaf, &intermediate]);
    push_signature(&reg, "n/app", &signed, size, &env);
    // Another image signed with the same key and chain, but the envelope names `signed`:
    // a signature copied onto another image does not count.
    let (copied, csize) = push_image(&reg, "n/app", "v2", b"another layer");
    push_signature(&reg, "n/app", &copied, csize, &env);
    let (unsigned, _) = push_image(&reg, "n/app", "v3", b"unsigned layer");
    let _ = unsigned;

    let policy = |trust_store: &Path, identity: &str| {
        let text = format!(
            "default: deny\nimages:\n  - match: \"{host}/n/*\"\n    notation:\n      trust_store: [{}]\n      identities: [\"{identity}\"]\n",
            trust_store.display()
        );
        TrustPolicy::parse(&text, &d.join("trust.yaml")).expect("policy")
    };
    let subject = "x509.subject: CN=notation signer, O=Rampart Test, C=US";
    let p = policy(&ca, subject);
    let v1 = ImageRef::parse(&format!("{host}/n/app:v1")).expect("ref");
    let verdict = p.evaluate(&reg, &v1, None).expect("evaluate");
    assert!(verdict.allowed, "{verdict:?}");
    let sig = &verdict.verified.as_ref().expect("verified").signatures[0];
    assert!(matches!(sig.form, SignatureForm::Notation), "{sig:?}");
    assert!(sig
        .identity
        .as_deref()
        .is_some_and(|s| s.contains("CN=notation signer")));
    // Pinned to the digest that runs.
    assert!(p.evaluate(&reg, &v1, Some(&signed)).expect("e").allowed);
    // A COSE envelope (application/cose) is verified the same way.
    let (cose_signed, cose_size) = push_image(&reg, "n/app", "v4", b"cose layer");
    let cose = cose_envelope(d, &cose_signed, cose_size, &key, &[&leaf, &intermediate]);
    push_signature_as(
        &reg,
        "n/app",
        &cose_signed,
        cose_size,
        &cose,
        "application/cose",
    );
    let v4 = ImageRef::parse(&format!("{host}/n/app:v4")).expect("ref");
    let verdict = p.evaluate(&reg, &v4, None).expect("evaluate");
    assert!(verdict.allowed, "COSE: {verdict:?}");
    assert!(verdict.verified.as_ref().expect("verified").signatures[0]
        .identity
        .as_deref()
        .is_some_and(|s| s.contains("CN=notation signer")));
    // The COSE envelope copied onto another image, or trusted by another store: refused.
    let (cose_copy, copy_size) = push_image(&reg, "n/app", "v5", b"cose copy");
    push_signature_as(
        &reg,
        "n/app",
        &cose_copy,
        copy_size,
        &cose,
        "application/cose",
    );
    let v5 = ImageRef::parse(&format!("{host}/n/app:v5")).expect("ref");
    assert!(!p.evaluate(&reg, &v5, None).expect("e").allowed);
    assert!(
        !policy(&other_ca, subject)
            .evaluate(&reg, &v4, None)
            .expect("e")
            .allowed
    );

    for (what, pol, image) in [
        ("copied signature", policy(&ca, subject), "v2"),
        ("unsigned", policy(&ca, subject), "v3"),
        ("another trust store", policy(&other_ca, subject), "v1"),
        (
            "another identity",
            policy(&ca, "x509.subject: CN=someone else, O=Rampart Test, C=US"),
            "v1",
        ),
    ] {
        let image = ImageRef::parse(&format!("{host}/n/app:{image}")).expect("ref");
        let verdict = pol.evaluate(&reg, &image, None).expect("evaluate");
        assert!(!verdict.allowed, "{what}: {verdict:?}");
        eprintln!("{what}: {}", verdict.message.unwrap_or_default());
    }
    // The trust policy names its file and line for a bad notation section.
    let err = TrustPolicy::parse(
        "images:\n  - match: x\n    notation:\n      trust_store: []\n      identities: [\"*\"]\n",
        &d.join("t.yaml"),
    )
    .expect_err("empty trust store");
    assert!(err.to_string().contains("t.yaml:3"), "{err}");
}
