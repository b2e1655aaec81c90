//! ECDSA P-256 keys in cosign's formats.
//!
//! * Public keys: PEM `PUBLIC KEY` (PKIX SubjectPublicKeyInfo), as `cosign generate-key-pair`
//!   writes `cosign.pub`.
//! * Private keys: PEM `ENCRYPTED SIGSTORE PRIVATE KEY` (cosign 2+; `ENCRYPTED COSIGN PRIVATE
//!   KEY` from cosign 1 is read too). The PEM body is JSON:
//!   `{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":B64},
//!     "cipher":{"name":"nacl/secretbox","nonce":B64},"ciphertext":B64}`:
//!   the key is scrypt(password, salt, N, r, p) of 32 bytes, the ciphertext a NaCl secretbox
//!   (XSalsa20-Poly1305, 24-byte nonce) of the PKCS#8 DER private key (go-securesystemslib
//!   `encrypted`). Only the parameter sets that library writes are accepted (N of 2^15, 2^16 or
//!   2^17, r = 8, p = 1): a key file cannot make us run an unbounded KDF. Unencrypted PKCS#8
//!   (`PRIVATE KEY`) and SEC1 (`EC PRIVATE KEY`) files are read too.
//! * Signatures: ECDSA over SHA-256 of the message, ASN.1 DER encoded.

use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::XSalsa20Poly1305;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{DerSignature, Signature, SigningKey, VerifyingKey};
use p256::pkcs8::der::pem::LineEnding;
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::TrustError;

/// PEM label of cosign 2+ encrypted private keys (written by us).
pub const SIGSTORE_PRIVATE_LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// PEM label of cosign 1 encrypted private keys (read only).
pub const COSIGN_PRIVATE_LABEL: &str = "ENCRYPTED COSIGN PRIVATE KEY";

const SCRYPT_N_DEFAULT: u32 = 32768;
const ALLOWED_N: [u32; 3] = [32768, 65536, 131072];

/// A private signing key.
#[derive(Clone)]
pub struct PrivateKey {
    key: SigningKey,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey({})", self.public().key_id())
    }
}

/// A public key that verifies signatures; [`PublicKey::key_id`] names it in messages.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    /// Where it came from, for messages (a file name, or "inline").
    pub source: String,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({} from {})", self.key_id(), self.source)
    }
}

#[derive(Serialize, Deserialize)]
struct ScryptParams {
    #[serde(rename = "N")]
    n: u32,
    r: u32,
    p: u32,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: ScryptParams,
    salt: String,
}

#[derive(Serialize, Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

#[derive(Serialize, Deserialize)]
struct Encrypted {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

fn derive(
    password: &[u8],
    salt: &[u8],
    n: u32,
    r: u32,
    p: u32,
) -> Result<Zeroizing<[u8; 32]>, String> {
    let log_n = n.trailing_zeros() as u8;
    let params = scrypt::Params::new(log_n, r, p, 32).map_err(|e| e.to_string())?;
    let mut key = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(password, salt, &params, key.as_mut()).map_err(|e| e.to_string())?;
    Ok(key)
}

/// Encrypts `plaintext` under `password` the way cosign does (scrypt N=32768, r=8, p=1 +
/// secretbox); returns the JSON document.
pub fn encrypt_secret(plaintext: &[u8], password: &[u8]) -> Result<Vec<u8>, TrustError> {
    let mut salt = [0u8; 32];
    OsRng.fill_bytes(&mut salt);
    let mut nonce = [0u8; 24];
    OsRng.fill_bytes(&mut nonce);
    let key = derive(password, &salt, SCRYPT_N_DEFAULT, 8, 1).map_err(TrustError::Other)?;
    let cipher = XSalsa20Poly1305::new(key.as_ref().into());
    let ciphertext = cipher
        .encrypt(&nonce.into(), plaintext)
        .map_err(|e| TrustError::Other(format!("secretbox: {e}")))?;
    let doc = Encrypted {
        kdf: Kdf {
            name: "scrypt".into(),
            params: ScryptParams {
                n: SCRYPT_N_DEFAULT,
                r: 8,
                p: 1,
            },
            salt: B64.encode(salt),
        },
        cipher: Cipher {
            name: "nacl/secretbox".into(),
            nonce: B64.encode(nonce),
        },
        ciphertext: B64.encode(ciphertext),
    };
    serde_json::to_vec(&doc).map_err(|e| TrustError::Other(e.to_string()))
}

/// Opens a document written by [`encrypt_secret`] or by cosign / go-securesystemslib.
pub fn decrypt_secret(
    doc: &[u8],
    password: &[u8],
    path: &Path,
) -> Result<Zeroizing<Vec<u8>>, TrustError> {
    let bad = |m: String| TrustError::key(path, m);
    let e: Encrypted =
        serde_json::from_slice(doc).map_err(|e| bad(format!("encrypted key JSON: {e}")))?;
    if e.kdf.name != "scrypt" {
        return Err(bad(format!(
            "unsupported KDF {:?} (only scrypt)",
            e.kdf.name
        )));
    }
    if e.cipher.name != "nacl/secretbox" {
        return Err(bad(format!(
            "unsupported cipher {:?} (only nacl/secretbox)",
            e.cipher.name
        )));
    }
    let ScryptParams { n, r, p } = e.kdf.params;
    if !ALLOWED_N.contains(&n) || r != 8 || p != 1 {
        return Err(bad(format!(
            "unsupported scrypt parameters N={n} r={r} p={p} (N 32768, 65536 or 131072, r 8, p 1)"
        )));
    }
    let salt = B64
        .decode(&e.kdf.salt)
        .map_err(|e| bad(format!("salt: {e}")))?;
    let nonce = B64
        .decode(&e.cipher.nonce)
        .map_err(|e| bad(format!("nonce: {e}")))?;
    let nonce: [u8; 24] = nonce
        .try_into()
        .map_err(|_| bad("nonce is not 24 bytes".into()))?;
    let ciphertext = B64
        .decode(&e.ciphertext)
        .map_err(|e| bad(format!("ciphertext: {e}")))?;
    let key = derive(password, &salt, n, r, p).map_err(bad)?;
    let cipher = XSalsa20Poly1305::new(key.as_ref().into());
    cipher
        .decrypt(&nonce.into(), ciphertext.as_slice())
        .map(Zeroizing::new)
        .map_err(|_| TrustError::WrongPassword {
            path: path.to_path_buf(),
        })
}

impl PrivateKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> PrivateKey {
        PrivateKey {
            key: SigningKey::random(&mut OsRng),
        }
    }

    pub fn public(&self) -> PublicKey {
        PublicKey {
            key: *self.key.verifying_key(),
            source: "generated".into(),
        }
    }

    /// PEM text: `ENCRYPTED SIGSTORE PRIVATE KEY` with a password, PKCS#8 `PRIVATE KEY`
    /// without.
    pub fn to_pem(&self, password: Option<&[u8]>) -> Result<Zeroizing<String>, TrustError> {
        let der = self
            .key
            .to_pkcs8_der()
            .map_err(|e| TrustError::Other(format!("PKCS#8: {e}")))?;
        match password {
            Some(pw) => {
                let doc = encrypt_secret(der.as_bytes(), pw)?;
                p256::pkcs8::der::pem::encode_string(SIGSTORE_PRIVATE_LABEL, LineEnding::LF, &doc)
                    .map(Zeroizing::new)
                    .map_err(|e| TrustError::Other(format!("PEM: {e}")))
            }
            None => self
                .key
                .to_pkcs8_pem(LineEnding::LF)
                .map(|s| Zeroizing::new(s.to_string()))
                .map_err(|e| TrustError::Other(format!("PEM: {e}"))),
        }
    }

    /// Reads a private key file; `password` opens an encrypted one (cosign keys written with
    /// an empty password need `Some(b"")`).
    pub fn from_pem(
        text: &str,
        password: Option<&[u8]>,
        path: &Path,
    ) -> Result<PrivateKey, TrustError> {
        let (label, der) = p256::pkcs8::der::pem::decode_vec(text.trim().as_bytes())
            .map_err(|e| TrustError::key(path, format!("not a PEM file: {e}")))?;
        let der = Zeroizing::new(der);
        let key = match label {
            SIGSTORE_PRIVATE_LABEL | COSIGN_PRIVATE_LABEL => {
                let pw = password.ok_or_else(|| {
                    TrustError::key(path, "the key is encrypted: a password is needed (RAMPART_KEY_PASSWORD or COSIGN_PASSWORD)")
                })?;
                let plain = decrypt_secret(&der, pw, path)?;
                SigningKey::from_pkcs8_der(&plain).map_err(|e| {
                    TrustError::key(
                        path,
                        format!("decrypted key is not a P-256 PKCS#8 key: {e}"),
                    )
                })?
            }
            "PRIVATE KEY" => SigningKey::from_pkcs8_der(&der)
                .map_err(|e| TrustError::key(path, format!("not a P-256 PKCS#8 key: {e}")))?,
            "EC PRIVATE KEY" => {
                let sk = p256::SecretKey::from_sec1_der(&der)
                    .map_err(|e| TrustError::key(path, format!("not a P-256 SEC1 key: {e}")))?;
                SigningKey::from(sk)
            }
            other => {
                return Err(TrustError::key(
                    path,
                    format!("PEM label {other:?} is not a private key this tool reads"),
                ))
            }
        };
        Ok(PrivateKey { key })
    }

    /// Reads a private key file from disk.
    pub fn load(path: &Path, password: Option<&[u8]>) -> Result<PrivateKey, TrustError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrustError::io(path, e))?;
        PrivateKey::from_pem(&text, password, path)
    }

    /// ECDSA P-256 over SHA-256 of `message`, ASN.1 DER.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let sig: DerSignature = self.key.sign(message);
        sig.as_bytes().to_vec()
    }
}

impl PublicKey {
    /// PEM `PUBLIC KEY` text.
    pub fn to_pem(&self) -> Result<String, TrustError> {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| TrustError::Other(format!("PEM: {e}")))
    }

    pub fn from_pem(text: &str, source: &str) -> Result<PublicKey, TrustError> {
        let key = VerifyingKey::from_public_key_pem(text.trim()).map_err(|e| {
            TrustError::key(
                source,
                format!("not a P-256 PEM public key (PUBLIC KEY): {e}"),
            )
        })?;
        Ok(PublicKey {
            key,
            source: source.to_string(),
        })
    }

    pub fn load(path: &Path) -> Result<PublicKey, TrustError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrustError::io(path, e))?;
        PublicKey::from_pem(&text, &path.display().to_string())
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> Vec<u8> {
        self.key
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default()
    }

    /// `sha256:` and the first 16 hex digits of the SHA-256 of the DER public key: a short,
    /// stable name for messages and events.
    pub fn key_id(&self) -> String {
        let h = hex::encode(Sha256::digest(self.spki_der()));
        format!("sha256:{}", &h[..16])
    }

    /// Whether `signature` (DER, or raw r||s) is this key's signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let sig = match Signature::from_der(signature) {
            Ok(s) => s,
            Err(_) => match Signature::from_slice(signature) {
                Ok(s) => s,
                Err(_) => return false,
            },
        };
        self.key.verify(message, &sig).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // go-securesystemslib encrypted/encrypted_test.go vectors, written by the Go implementation
    // cosign uses: `Decrypt` of the first is "reallyimportant" under "supersecret"; the second
    // (N = 65536) was written by `Marshal`, which seals the JSON string of the base64 bytes.
    const GO_VECTORS: [&str; 2] = [
        r#"{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"N9a7x5JFGbrtB2uBR81jPwp0eiLR4A7FV3mjVAQrg1g="},"cipher":{"name":"nacl/secretbox","nonce":"2h8HxMmgRfuYdpswZBQaU3xJ1nkA/5Ik"},"ciphertext":"SEW6sUh0jf2wfdjJGPNS9+bkk2uB+Cxamf32zR8XkQ=="}"#,
        r#"{"kdf":{"name":"scrypt","params":{"N":65536,"r":8,"p":1},"salt":"FhzPOt9/bJG4PTq6lQ6ecG6GzaOuOy/ynG5+yRiFlNs="},"cipher":{"name":"nacl/secretbox","nonce":"aw1ng1jHaDz/tQ7V2gR9O2+IGQ8xJEuE"},"ciphertext":"HycvuLZL4sYH0BrYTh4E/H20VtAW6u5zL5Pr+IBjYLYnCPzDkq8="}"#,
    ];

    #[test]
    fn opens_go_securesystemslib_vectors() {
        let expected: [&[u8]; 2] = [b"reallyimportant", b"\"cmVhbGx5aW1wb3J0YW50\""];
        for (v, want) in GO_VECTORS.iter().zip(expected) {
            let plain = decrypt_secret(v.as_bytes(), b"supersecret", Path::new("vector"))
                .expect("decrypts");
            assert_eq!(plain.as_slice(), want);
            let err = decrypt_secret(v.as_bytes(), b"supersecreT", Path::new("vector"))
                .expect_err("wrong password");
            assert!(matches!(err, TrustError::WrongPassword { .. }), "{err}");
        }
    }

    #[test]
    fn refuses_unbounded_kdf_parameters() {
        let v = r#"{"kdf":{"name":"scrypt","params":{"N":99,"r":99,"p":99},"salt":"cZFcQJdwPhPyhU1R4qkl0qVOIjZd4V/7LYYAavq166k="},"cipher":{"name":"nacl/secretbox","nonce":"7vhRS7j0hEPBWV05skAdgLj81AkGeE7U"},"ciphertext":"6WYU/YSXVbYzl/NzaeAzmjLyfFhOOjLc0d8/GFV0aBFdJvyCcXc="}"#;
        let err =
            decrypt_secret(v.as_bytes(), b"supersecret", Path::new("k.key")).expect_err("refused");
        assert!(
            err.to_string().contains("unsupported scrypt parameters"),
            "{err}"
        );
    }

    #[test]
    fn encrypted_key_round_trip_and_signature() {
        let k = PrivateKey::generate();
        let pem = k.to_pem(Some(b"pw")).expect("pem");
        assert!(pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
        let back = PrivateKey::from_pem(&pem, Some(b"pw"), Path::new("k.key")).expect("read");
        let sig = back.sign(b"hello");
        let pubk = PublicKey::from_pem(&k.public().to_pem().expect("pub"), "k.pub").expect("pub");
        assert!(pubk.verify(b"hello", &sig));
        assert!(!pubk.verify(b"hellO", &sig));
        let err = PrivateKey::from_pem(&pem, Some(b"nope"), Path::new("k.key")).expect_err("pw");
        assert!(matches!(err, TrustError::WrongPassword { .. }));
        let err = PrivateKey::from_pem(&pem, None, Path::new("k.key")).expect_err("no pw");
        assert!(err.to_string().contains("password is needed"), "{err}");
        let plain = k.to_pem(None).expect("plain");
        assert!(plain.starts_with("-----BEGIN PRIVATE KEY-----"));
        PrivateKey::from_pem(&plain, None, Path::new("p.key")).expect("plain read");
    }
}

/// Writes `key` as cosign's key pair `PREFIX.key` (0600, encrypted with `password` when
/// given) and `PREFIX.pub` (0644); an existing file is replaced only with `force`. Returns the
/// two paths.
pub fn write_key_pair(
    key: &PrivateKey,
    prefix: &std::path::Path,
    password: Option<&[u8]>,
    force: bool,
) -> Result<(std::path::PathBuf, std::path::PathBuf), TrustError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let write_new = |path: &std::path::Path, data: &[u8], mode: u32| {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).mode(mode);
        if force {
            opts.create(true).truncate(true);
        } else {
            opts.create_new(true);
        }
        let mut f = opts.open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                TrustError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                TrustError::io(path, e)
            }
        })?;
        f.write_all(data).map_err(|e| TrustError::io(path, e))
    };
    let private = key.to_pem(password)?;
    let public = key.public().to_pem()?;
    let p = prefix.display().to_string();
    let (kp, pp) = (
        std::path::PathBuf::from(format!("{p}.key")),
        std::path::PathBuf::from(format!("{p}.pub")),
    );
    write_new(&kp, private.as_bytes(), 0o600)?;
    write_new(&pp, public.as_bytes(), 0o644)?;
    Ok((kp, pp))
}

#[cfg(test)]
mod write_tests {
    use super::*;

    #[test]
    fn key_pair_files_are_0600_and_0644_and_not_replaced_without_force() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let prefix = dir.path().join("k");
        let key = PrivateKey::generate();
        let (kp, pp) = write_key_pair(&key, &prefix, Some(b"pw"), false).expect("written");
        let mode =
            |p: &std::path::Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!((mode(&kp), mode(&pp)), (0o600, 0o644));
        let again = write_key_pair(&key, &prefix, None, false).expect_err("exists");
        assert!(again.is_bad_input(), "{again}");
        assert!(again
            .to_string()
            .ends_with("k.key exists (use --force to replace it)"));
        write_key_pair(&key, &prefix, None, true).expect("replaced with force");
    }
}
