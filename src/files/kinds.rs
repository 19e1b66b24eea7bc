//! What a file is: its name checked, its type sniffed from its first bytes
//! (the name's extension only when the content says nothing), and the file
//! policy's type lists matched against both.

use crate::meta::FilePolicy;
use crate::protocol::{ErrorCode, ProtocolError};

/// The longest file name, in bytes.
pub const MAX_NAME_BYTES: usize = 255;

/// Checks a file name: a name, never a path.
pub fn check_name(name: &str) -> Result<(), ProtocolError> {
    let bad = name.trim().is_empty()
        || name.len() > MAX_NAME_BYTES
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control());
    if bad {
        return Err(ProtocolError::invalid(format!(
            "file name {name:?} must be 1 to {MAX_NAME_BYTES} bytes, without '/', '\\\\' or \
             control characters, and not '.' or '..'"
        )));
    }
    Ok(())
}

/// The name's extension, lowercase; empty when it has none.
pub fn extension(name: &str) -> String {
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => ext.to_ascii_lowercase(),
        _ => String::new(),
    }
}

/// Types named by extension when sniffing finds nothing (text has no magic).
fn by_extension(ext: &str) -> &'static str {
    match ext {
        "txt" | "log" | "md" => "text/plain",
        "csv" => "text/csv",
        "json" => "application/json",
        "xml" => "application/xml",
        "html" | "htm" => "text/html",
        "svg" => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

/// What a file's bytes say it is: its MIME type and the extension such
/// files have; its name's when the bytes say nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct Sniffed {
    pub mime: String,
    pub ext: String,
}

/// Returns what a file is from its first bytes, or from its name when
/// they say nothing.
pub fn sniff(head: &[u8], name: &str) -> Sniffed {
    match infer::get(head) {
        Some(kind) => Sniffed {
            mime: kind.mime_type().to_string(),
            ext: kind.extension().to_string(),
        },
        None => {
            let ext = extension(name);
            Sniffed {
                mime: by_extension(&ext).to_string(),
                ext,
            }
        }
    }
}

/// Says whether a type is one a thumbnail is made of.
pub fn is_image(mime: &str) -> bool {
    matches!(mime, "image/png" | "image/jpeg" | "image/gif")
}

fn matches(entry: &str, mime: &str, ext: &str) -> bool {
    if let Some(family) = entry.strip_suffix("/*") {
        return mime.split('/').next() == Some(family);
    }
    entry == mime || (!ext.is_empty() && entry == ext)
}

/// Checks a file's type against the policy's lists: what its bytes say
/// (`content`; the name's type before any byte arrived) and its name.
pub fn check_type(policy: &FilePolicy, name: &str, content: &Sniffed) -> Result<(), ProtocolError> {
    let ext = extension(name);
    let mime = content.mime.as_str();
    // A renamed executable is caught by its content, a text by its name.
    let named = by_extension(&ext);
    let hit = |entry: &String| {
        matches(entry, mime, &ext)
            || matches(entry, named, &ext)
            || matches(entry, mime, &content.ext)
    };
    if let Some(entry) = policy.blocked_types.iter().find(|e| hit(e)) {
        return Err(ProtocolError::new(
            ErrorCode::Forbidden,
            format!("files of type {mime} ({name}) are blocked by the file policy ({entry})"),
        ));
    }
    if !policy.allowed_types.is_empty() && !policy.allowed_types.iter().any(hit) {
        return Err(ProtocolError::new(
            ErrorCode::Forbidden,
            format!(
                "the file policy allows only {}",
                policy.allowed_types.join(", ")
            ),
        ));
    }
    Ok(())
}

/// Returns a `Content-Disposition` value: inline for the images a browser
/// shows safely, an attachment for everything else; the name in ASCII and
/// in RFC 5987 UTF-8.
pub fn disposition(name: &str, mime: &str) -> String {
    let kind = if is_image(mime) {
        "inline"
    } else {
        "attachment"
    };
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_types_and_policies() {
        assert!(check_name("报告.pdf").is_ok());
        for bad in ["", " ", "..", "../etc/passwd", "a\\b", "a\nb"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(extension("a.TAR.GZ"), "gz");
        assert_eq!(extension(".bashrc"), "");
        let png = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0];
        assert_eq!(sniff(&png, "notes.txt").mime, "image/png");
        assert_eq!(sniff(b"hello", "notes.txt").mime, "text/plain");
        let mz = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff";
        let exe = sniff(mz, "holiday.jpg");
        assert_eq!(exe.ext, "exe");
        let policy = FilePolicy {
            blocked_types: vec!["exe".into()],
            ..Default::default()
        };
        assert!(check_type(&policy, "holiday.jpg", &exe).is_err());
        let by_name = sniff(&[], "setup.exe");
        assert!(check_type(&policy, "setup.exe", &by_name).is_err());
        assert!(check_type(&policy, "a.png", &sniff(&png, "a.png")).is_ok());
        let images_only = FilePolicy {
            allowed_types: vec!["image/*".into()],
            ..Default::default()
        };
        assert!(check_type(&images_only, "a.png", &sniff(&png, "a.png")).is_ok());
        assert!(check_type(&images_only, "a.txt", &sniff(b"x", "a.txt")).is_err());
        assert_eq!(
            disposition("年报 \"x\".pdf", "application/pdf"),
            "attachment; filename=\"__ _x_.pdf\"; filename*=UTF-8''%E5%B9%B4%E6%8A%A5%20%22x%22.pdf"
        );
    }
}
