//! The DICOM files a user names: folders expanded recursively, in a stable order.

use std::path::PathBuf;

/// Expand directories (recursively, sorted) into the files they hold.
pub fn collect_files(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
                .map(|e| e.map(|e| e.path()))
                .collect::<Result<_, _>>()?;
            entries.sort();
            out.extend(collect_files(&entries)?);
        } else {
            out.push(path.clone());
        }
    }
    Ok(out)
}
