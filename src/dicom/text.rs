//! Reading text attributes: values on the wire are padded (a trailing space for even
//! length, a NUL in UIDs), and some writers pad in front too. Every reader of a string
//! attribute in the crate goes through here, so padding is handled once.

use dicom_core::Tag;
use dicom_object::InMemDicomObject;

/// A text attribute without its padding (NULs or spaces, either end); empty when absent.
pub fn text(obj: &InMemDicomObject, tag: Tag) -> String {
    text_opt(obj, tag).unwrap_or_default()
}

/// Like `text`, but `None` when the attribute is absent or not text.
pub fn text_opt(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    obj.get(tag)
        .and_then(|e| e.value().to_str().ok())
        .map(|s| unpad(&s).to_string())
}

/// A value without its padding: NULs and spaces at either end.
pub fn unpad(s: &str) -> &str {
    s.trim_matches(|c: char| c == '\0' || c.is_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_is_removed_at_both_ends() {
        assert_eq!(unpad("1.2.3\0"), "1.2.3");
        assert_eq!(unpad(" CT "), "CT");
        assert_eq!(unpad("\0 a b \0"), "a b");
        assert_eq!(unpad(""), "");
    }
}
