//! UIDs: our implementation identity, the UIDs we create, and the check every received
//! UID passes before it may name a file.
//!
//! Created UIDs are `2.25.<decimal UUID>` (PS3.5 §B.2), or under an organisation's root,
//! and all are derived from names (UUID v5), so the same inputs always give the same UID:
//! a re-run re-creates the same objects instead of duplicates.

use uuid::Uuid;

/// Implementation Class UID written into the meta group of every file we store or create.
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.113485528769194166527137794403905953792";
/// Implementation Version Name (SH, at most 16 characters).
pub const IMPLEMENTATION_VERSION_NAME: &str =
    concat!("OSTEOSCREEN_", env!("CARGO_PKG_VERSION_MINOR"));

/// Namespace of every osteoscreen-derived UID (a fixed random UUID).
const NAMESPACE: Uuid = Uuid::from_u128(0x6f5c_2b1e_9a43_4d7e_8c21_53b0_e4a7_19d2);

/// `2.25.<n>` for the UUID v5 of `parts` joined by `/`.
pub fn derived(parts: &[&str]) -> String {
    let name = parts.join("/");
    format!(
        "2.25.{}",
        Uuid::new_v5(&NAMESPACE, name.as_bytes()).as_u128()
    )
}

/// Like `derived`, under an organisation's root (`root.<n>`, cut to 64 characters);
/// an empty root gives `derived`.
pub fn derived_under(root: &str, parts: &[&str]) -> String {
    if root.is_empty() {
        return derived(parts);
    }
    let n = Uuid::new_v5(&NAMESPACE, parts.join("/").as_bytes())
        .as_u128()
        .to_string();
    let room = 64usize.saturating_sub(root.len() + 1).max(1);
    format!("{root}.{}", &n[..n.len().min(room)])
}

/// A UID that may become a path component: non-empty dot-separated runs of digits, ≤ 64 chars.
/// (Stricter than "only digits and dots": `..` and `.` are refused too.)
pub fn is_safe_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 64
        && uid
            .split('.')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_uids_are_stable_valid_and_distinct() {
        let a = derived(&["study", "1"]);
        assert_eq!(a, derived(&["study", "1"]));
        assert_ne!(a, derived(&["study", "2"]));
        assert!(a.len() <= 64 && is_safe_uid(&a), "{a}");
        assert_eq!(derived_under("", &["x"]), derived(&["x"]));
        let root = "1.2.826.0.1.3680043.10.1234.5678.9012.3456";
        let b = derived_under(root, &["x"]);
        assert!(b.starts_with(root) && b.len() <= 64, "{b}");
        assert!(is_safe_uid(&b), "{b}");
    }

    #[test]
    fn safe_uids() {
        assert!(is_safe_uid("1.2.840.10008.5.1.4.1.1.2"));
        assert!(is_safe_uid("2.25.123"));
        for bad in [
            "",
            ".",
            "..",
            "1..2",
            ".1",
            "1.",
            "../../etc",
            "1.2/3",
            "1.2a",
            "1 .2",
            &"1.".repeat(40),
        ] {
            assert!(!is_safe_uid(bad), "{bad:?} must be refused");
        }
    }
}
