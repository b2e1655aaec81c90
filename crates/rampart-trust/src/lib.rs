//! Image trust for Rampart.
//!
//! * [`PrivateKey`] / [`PublicKey`]: ECDSA P-256 keys in cosign's PEM formats, including its
//!   encrypted private key (scrypt + NaCl secretbox).
//! * [`sign`] / [`verify`]: signatures stored as cosign stores them ([`SignForm`]), in the
//!   image's own registry ([`Registry`]); verification pins the digest and names the digests
//!   involved when it fails.
//! * [`verify_with`] / [`NotationTrust`]: Notation (Notary Project) JWS signatures verified
//!   against an X.509 trust store and trusted identities, beside cosign's.
//! * [`TrustPolicy`]: repository patterns to required signers, missing-signature behaviour,
//!   pinned digests.
//! * [`authz`]: the Docker Engine authorization plugin that applies an [`authz::AdmissionPolicy`]
//!   to every container create.

mod args;
pub mod authz;
mod error;
mod keys;
mod notation;
mod policy;
mod reference;
mod registry;
mod signature;

pub use args::{password_from_env, SignArgs, VerifyArgs, PASSWORD_VARS};
pub use error::TrustError;
pub use keys::{decrypt_secret, encrypt_secret, write_key_pair, PrivateKey, PublicKey};
pub use notation::{
    verify_cose_envelope, verify_envelope, verify_envelope_of, NotationTrust, NotationVerified,
    COSE_MEDIA_TYPE, JWS_MEDIA_TYPE, NOTATION_ARTIFACT_TYPE,
};
pub use policy::{Missing, TrustPolicy, TrustRule, TrustVerdict};
pub use reference::{is_digest, ImageRef};
pub use registry::{fallback_tag, sha256_digest, signature_tag, Descriptor, Manifest, Registry};
pub use signature::{
    check_bundle, dsse_pae, resolve, sign, signed_digests, simple_signing_payload, verify,
    verify_with, Rejected, SignForm, SignatureForm, Verified, VerifiedSignature, BUNDLE_MEDIA_TYPE,
    SIGN_PREDICATE,
};
