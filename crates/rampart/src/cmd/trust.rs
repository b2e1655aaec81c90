//! `rampart image sign` and `rampart image verify`: cosign-compatible signatures in the image's
//! registry, verified against keys or a trust policy. The options are `rampart_trust`'s
//! `SignArgs` and `VerifyArgs`.

use std::process::ExitCode;

use rampart_trust::{password_from_env, ImageRef, PrivateKey, Registry, TrustError};
pub use rampart_trust::{SignArgs, VerifyArgs};

use super::BadInput;

fn trust_error(e: TrustError) -> anyhow::Error {
    if e.is_bad_input() {
        BadInput(e.to_string()).into()
    } else {
        e.into()
    }
}

pub fn sign(a: SignArgs) -> anyhow::Result<ExitCode> {
    let image = ImageRef::parse(&a.image).map_err(trust_error)?;
    let password = password_from_env();
    let key = PrivateKey::load(&a.key, password.as_deref()).map_err(trust_error)?;
    let annotations = a.annotations().map_err(trust_error)?;
    let reg = Registry::new(&image.registry);
    let digest =
        rampart_trust::sign(&reg, &image, &key, a.form(), annotations).map_err(trust_error)?;
    println!(
        "Signed {image} at {digest} with {} ({})",
        key.public().key_id(),
        a.form().describe()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn verify(a: VerifyArgs) -> anyhow::Result<ExitCode> {
    let image = ImageRef::parse(&a.image).map_err(trust_error)?;
    let policy = a.policy().map_err(trust_error)?;
    let reg = Registry::new(&image.registry);
    let verdict = policy.evaluate(&reg, &image, None).map_err(trust_error)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&verdict)?);
    } else {
        print!("{}", verdict.text());
    }
    match (&verdict.message, verdict.allowed) {
        (Some(m), true) => eprintln!("warning: {m}"),
        (Some(m), false) => eprintln!("error: verification failed: {m}"),
        _ => {}
    }
    Ok(if verdict.allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
