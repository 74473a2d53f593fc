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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_uids_are_stable_valid_and_distinct() {
        let a = derived(&["study", "1"]);
        assert_eq!(a, derived(&["study", "1"]));
        assert_ne!(a, derived(&["study", "2"]));
        assert!(a.len() <= 64 && crate::dimse::sop::is_safe_uid(&a), "{a}");
    }
}
