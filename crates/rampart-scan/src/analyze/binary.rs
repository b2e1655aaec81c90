//! Dependencies compiled into executables: Go build info (`.go.buildinfo`, as `go version -m`
//! prints it) and Rust binaries built with `cargo auditable` (the zlib-compressed JSON of the
//! `.dep-v0` section). ELF is read with the `object` crate; every offset and length read from
//! the binary is bounds-checked.

use object::{Object, ObjectSection, ObjectSegment};
use rampart_event::PackageKind;
use serde::Deserialize;

use super::{lang_package, FileRef, FileResult, Warning};

/// Executables big enough to be programs; the content is checked for the ELF magic.
pub(crate) fn wants(f: &FileRef<'_>) -> bool {
    f.mode & 0o111 != 0 && f.size >= 1024
}

pub(crate) fn parse(data: &[u8], out: &mut FileResult) {
    if !data.starts_with(b"\x7fELF") {
        return;
    }
    let Ok(file) = object::File::parse(data) else {
        return;
    };
    if let Some(s) = file.section_by_name(".go.buildinfo") {
        if let Ok(d) = s.data() {
            go_buildinfo(&file, d, out);
        }
    }
    if let Some(s) = file.section_by_name(".dep-v0") {
        if let Ok(d) = s.data() {
            cargo_auditable(d, out);
        }
    }
}

fn warn(out: &mut FileResult, message: String) {
    out.warnings.push(Warning {
        path: String::new(),
        line: None,
        message,
    });
}

/// Reads an unsigned LEB128 varint.
fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut x = 0u64;
    for (i, byte) in b.iter().enumerate().take(10) {
        x |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((x, i + 1));
        }
    }
    None
}

fn varint_string(b: &[u8]) -> Option<(&[u8], usize)> {
    let (len, n) = uvarint(b)?;
    let end = n.checked_add(usize::try_from(len).ok()?)?;
    Some((b.get(n..end)?, end))
}

/// Bytes at virtual address `addr` of the loaded image (old build info points into memory).
fn read_vaddr<'a>(file: &object::File<'a>, addr: u64, len: u64) -> Option<&'a [u8]> {
    for seg in file.segments() {
        let (start, size) = (seg.address(), seg.size());
        if addr >= start && addr.checked_add(len)? <= start.checked_add(size)? {
            let data = seg.data().ok()?;
            let off = usize::try_from(addr - start).ok()?;
            return data.get(off..off.checked_add(usize::try_from(len).ok()?)?);
        }
    }
    None
}

fn go_buildinfo(file: &object::File<'_>, d: &[u8], out: &mut FileResult) {
    const MAGIC: &[u8] = b"\xff Go buildinf:";
    let Some(pos) = d.windows(MAGIC.len()).position(|w| w == MAGIC) else {
        return;
    };
    let d = &d[pos..];
    if d.len() < 32 {
        return;
    }
    let ptr_size = usize::from(d[14]);
    let flags = d[15];
    let (version, modinfo): (Vec<u8>, Vec<u8>) = if flags & 0x2 != 0 {
        // Go 1.18+: the strings follow the 32-byte header.
        let Some((v, n)) = varint_string(&d[32..]) else {
            return warn(out, "Go build info: bad version string".into());
        };
        let Some((m, _)) = varint_string(&d[32 + n..]) else {
            return warn(out, "Go build info: bad module string".into());
        };
        (v.to_vec(), m.to_vec())
    } else {
        // Before Go 1.18: two pointers to Go string headers (pointer, length).
        if ptr_size != 4 && ptr_size != 8 {
            return;
        }
        let big = flags & 0x1 != 0;
        let word = |b: &[u8]| -> Option<u64> {
            Some(match (ptr_size, big) {
                (8, false) => u64::from_le_bytes(b.get(..8)?.try_into().ok()?),
                (8, true) => u64::from_be_bytes(b.get(..8)?.try_into().ok()?),
                (_, false) => u64::from(u32::from_le_bytes(b.get(..4)?.try_into().ok()?)),
                (_, true) => u64::from(u32::from_be_bytes(b.get(..4)?.try_into().ok()?)),
            })
        };
        let read_string = |ptr: u64| -> Option<Vec<u8>> {
            let hdr = read_vaddr(file, ptr, 2 * ptr_size as u64)?;
            let data_ptr = word(hdr)?;
            let len = word(hdr.get(ptr_size..)?)?;
            if len > 1 << 20 {
                return None;
            }
            read_vaddr(file, data_ptr, len).map(<[u8]>::to_vec)
        };
        let (Some(vp), Some(mp)) = (word(&d[16..]), word(&d[16 + ptr_size..])) else {
            return;
        };
        match (read_string(vp), read_string(mp)) {
            (Some(v), Some(m)) => (v, m),
            _ => {
                return warn(
                    out,
                    "Go build info (pre-1.18 layout) could not be read".into(),
                )
            }
        }
    };
    let go_version = String::from_utf8_lossy(&version).into_owned();
    // The module info is framed by 16-byte sentinels.
    let modinfo = if modinfo.len() >= 33 && modinfo[modinfo.len() - 17] == b'\n' {
        &modinfo[16..modinfo.len() - 16]
    } else {
        &modinfo[..]
    };
    let text = String::from_utf8_lossy(modinfo);
    if let Some(v) = go_version.strip_prefix("go") {
        out.packages
            .push(lang_package(PackageKind::Go, "stdlib", &format!("v{v}")));
    }
    let mut last_dep: Option<usize> = None;
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f.as_slice() {
            ["mod", path, version, ..] if *version != "(devel)" => {
                out.packages
                    .push(lang_package(PackageKind::Go, path, version));
                last_dep = None;
            }
            ["dep", path, version, ..] => {
                out.packages
                    .push(lang_package(PackageKind::Go, path, version));
                last_dep = Some(out.packages.len() - 1);
            }
            ["=>", path, version, ..] => {
                // A replace directive: the code compiled in is the replacement's.
                if let Some(i) = last_dep.take() {
                    if version.starts_with('v') {
                        out.packages[i] = lang_package(PackageKind::Go, path, version);
                    } else {
                        out.packages.remove(i); // a local directory: no version to match
                    }
                }
            }
            _ => {}
        }
    }
}

#[derive(Deserialize)]
struct AuditableDeps {
    packages: Vec<AuditablePackage>,
}

#[derive(Deserialize)]
struct AuditablePackage {
    name: String,
    version: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    kind: Option<String>,
}

fn cargo_auditable(d: &[u8], out: &mut FileResult) {
    let json = match crate::limit::inflate_zlib(d, 8 << 20) {
        Ok(j) => j,
        Err(e) => return warn(out, format!("cargo-auditable section: {e}")),
    };
    let deps: AuditableDeps = match serde_json::from_slice(&json) {
        Ok(d) => d,
        Err(e) => return warn(out, format!("cargo-auditable section: {e}")),
    };
    for p in deps.packages {
        // Build-time dependencies are not in the binary; local crates have no advisories.
        if p.kind.as_deref() == Some("build") || p.source == "local" {
            continue;
        }
        out.packages
            .push(lang_package(PackageKind::Cargo, &p.name, &p.version));
    }
}
