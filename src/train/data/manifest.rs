//! Manifest CSVs: a plain one (`path,label,t_score,bmd,patient_id[,view]`, paths relative to
//! the CSV), and the `manifest.csv` that `osteoscreen synth` writes (one study folder per
//! row, `folder,class,t_score,bmd_g_cm2`; every radiograph in the folder is a sample).

use std::path::{Path, PathBuf};

use super::columns::{normalise, Table};
use super::tabular::{parse_label, read_csv};
use super::{files_with, who_class, ColumnOverrides, DataError, Dataset, Layout, Sample};
use crate::analysis::finding::View;

pub struct Manifest;

fn csv_path(root: &Path) -> PathBuf {
    if root.is_dir() {
        root.join("manifest.csv")
    } else {
        root.to_path_buf()
    }
}

/// Which manifest `headers` are.
#[derive(Debug, PartialEq)]
enum Kind {
    Plain,
    Synth,
}

fn kind(headers: &[String]) -> Option<Kind> {
    let has = |n: &str| headers.iter().any(|h| normalise(h) == n);
    if has("path") && (has("label") || has("tscore")) {
        Some(Kind::Plain)
    } else if has("folder") && has("class") && has("studyuid") {
        Some(Kind::Synth)
    } else {
        None
    }
}

impl Layout for Manifest {
    fn name(&self) -> &'static str {
        "manifest"
    }

    fn detect(&self, root: &Path) -> bool {
        let path = csv_path(root);
        csv::Reader::from_path(&path)
            .ok()
            .and_then(|mut r| r.headers().ok().cloned())
            .is_some_and(|h| kind(&h.iter().map(String::from).collect::<Vec<_>>()).is_some())
    }

    fn load(&self, root: &Path, _: &ColumnOverrides) -> Result<Dataset, DataError> {
        let path = csv_path(root);
        let table = read_csv(&path)?;
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let col = |n: &str| table.headers.iter().position(|h| normalise(h) == n);
        let mut notes = Vec::new();
        let samples = match kind(&table.headers) {
            Some(Kind::Plain) => plain(&table, &dir, &col, &mut notes),
            Some(Kind::Synth) => synth(&table, &dir, &col, &mut notes)?,
            None => {
                return Err(DataError::Invalid(format!(
                    "{}: not a manifest",
                    path.display()
                )))
            }
        };
        Ok(Dataset {
            samples,
            notes,
            ..Dataset::default()
        })
    }
}

fn plain(
    t: &Table,
    dir: &Path,
    col: &dyn Fn(&str) -> Option<usize>,
    notes: &mut Vec<String>,
) -> Vec<Sample> {
    let (path, label, ts, bmd) = (col("path"), col("label"), col("tscore"), col("bmd"));
    let (patient, study, view) = (col("patientid"), col("study"), col("view"));
    let mut out = Vec::new();
    let mut skipped = 0;
    for row in 0..t.rows.len() {
        let t_score = t.number(row, ts);
        let lab = t
            .cell(row, label)
            .and_then(parse_label)
            .or_else(|| t_score.map(who_class));
        let (Some(p), Some(lab)) = (t.cell(row, path), lab) else {
            skipped += 1;
            continue;
        };
        let image = dir.join(p);
        let patient = t.cell(row, patient).unwrap_or(p).to_string();
        out.push(Sample {
            image,
            study: t.cell(row, study).unwrap_or(&patient).to_string(),
            patient,
            label: lab,
            t_score: t_score.map(|v| v as f32),
            bmd: t.number(row, bmd).map(|v| v as f32),
            view: t.cell(row, view).and_then(parse_view),
        });
    }
    if skipped > 0 {
        notes.push(format!(
            "{skipped} rows without a path or a label/T-score; skipped"
        ));
    }
    out
}

fn synth(
    t: &Table,
    dir: &Path,
    col: &dyn Fn(&str) -> Option<usize>,
    notes: &mut Vec<String>,
) -> Result<Vec<Sample>, DataError> {
    let (folder, class, ts, bmd) = (col("folder"), col("class"), col("tscore"), col("bmdgcm2"));
    let (uid, modality) = (col("studyuid"), col("modality"));
    let mut out = Vec::new();
    let mut ct = 0;
    for row in 0..t.rows.len() {
        if t.cell(row, modality).is_some_and(|m| m == "CT") {
            ct += 1;
            continue;
        }
        let (Some(f), Some(label)) = (
            t.cell(row, folder),
            t.cell(row, class).and_then(parse_label),
        ) else {
            continue;
        };
        if f.contains("..") || Path::new(f).is_absolute() {
            continue;
        }
        let study = t.cell(row, uid).unwrap_or(f).to_string();
        for image in files_with(&dir.join(f), &["dcm"])? {
            let name = image.file_name().and_then(|n| n.to_str()).unwrap_or("");
            out.push(Sample {
                view: if name.contains("_ap") {
                    Some(View::Frontal)
                } else if name.contains("_lat") {
                    Some(View::Lateral)
                } else {
                    None
                },
                image,
                patient: study.clone(),
                study: study.clone(),
                label,
                t_score: t.number(row, ts).map(|v| v as f32),
                bmd: t.number(row, bmd).map(|v| v as f32),
            });
        }
    }
    if ct > 0 {
        notes.push(format!("{ct} CT studies: not used by the X-ray trainer"));
    }
    Ok(out)
}

fn parse_view(s: &str) -> Option<View> {
    // A View Position value, or the words people write in a spreadsheet column.
    let s = s.trim();
    crate::analysis::select::view_from_position(s).or_else(|| {
        match s.to_ascii_lowercase().as_str() {
            "frontal" => Some(View::Frontal),
            "rlat" | "llat" => Some(View::Lateral),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_column_reads_view_positions_and_spreadsheet_words() {
        for (s, v) in [
            ("AP", Some(View::Frontal)),
            (" pa ", Some(View::Frontal)),
            ("Frontal", Some(View::Frontal)),
            ("LL", Some(View::Lateral)),
            ("lateral", Some(View::Lateral)),
            ("RLAT", Some(View::Lateral)),
            ("oblique", None),
            ("", None),
        ] {
            assert_eq!(parse_view(s), v, "{s:?}");
        }
    }
}
