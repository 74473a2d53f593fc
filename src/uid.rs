//! DICOM UIDs we create. All are `2.25.<decimal UUID>` (PS3.5 §B.2), and all are
//! derived from names (UUID v5), so the same inputs always give the same UID: a re-run
//! re-creates the same objects instead of duplicates.

use uuid::Uuid;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_uids_are_stable_valid_and_distinct() {
        let a = derived(&["study", "1"]);
        assert_eq!(a, derived(&["study", "1"]));
        assert_ne!(a, derived(&["study", "2"]));
        assert!(a.len() <= 64 && crate::dimse::sop::is_safe_uid(&a), "{a}");
        assert_eq!(derived_under("", &["x"]), derived(&["x"]));
        let root = "1.2.826.0.1.3680043.10.1234.5678.9012.3456";
        let b = derived_under(root, &["x"]);
        assert!(b.starts_with(root) && b.len() <= 64, "{b}");
        assert!(crate::dimse::sop::is_safe_uid(&b), "{b}");
    }
}
