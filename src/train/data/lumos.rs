//! The LUMOS layout: `lumos_x/lumos_x_NNN/lumos_x_NNN_K.dcm` radiographs, `lumos_ct/...` CT
//! (counted, not used by the X-ray trainer) and `lumos_clinical_data.xlsx` with DXA results,
//! one row per patient. The sheet's column names are not published, so columns are found
//! by pattern (`columns`) and can be named with `--column`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use calamine::{open_workbook_auto, Reader};

use super::columns::{self, id_number, Role, Table};
use super::{files_with, io_err, ClinicalRecord, ColumnOverrides, DataError, Dataset, Layout};
use super::{who_class, Sample};

pub struct Lumos;

const SHEET: &str = "lumos_clinical_data.xlsx";

/// The clinical sheet: at the root or one folder down.
fn sheet(root: &Path) -> Option<PathBuf> {
    let direct = root.join(SHEET);
    if direct.is_file() {
        return Some(direct);
    }
    let entries = std::fs::read_dir(root).ok()?;
    entries
        .flatten()
        .map(|e| e.path().join(SHEET))
        .find(|p| p.is_file())
}

impl Layout for Lumos {
    fn name(&self) -> &'static str {
        "LUMOS"
    }

    fn detect(&self, root: &Path) -> bool {
        root.join("lumos_x").is_dir() || sheet(root).is_some()
    }

    fn load(&self, root: &Path, overrides: &ColumnOverrides) -> Result<Dataset, DataError> {
        let path = sheet(root)
            .ok_or_else(|| DataError::Invalid(format!("{}: no {SHEET} found", root.display())))?;
        let table = read_xlsx(&path)?;
        let mut notes = vec![format!(
            "{}: {} rows, columns: {}",
            path.display(),
            table.rows.len(),
            table.headers.join(" | ")
        )];
        let cols = Columns::find(&table, overrides, &mut notes)?;
        let Some(id_col) = cols.patient else {
            return Err(DataError::Invalid(format!(
                "{}: no patient id column found; name it with --column patient=<header>",
                path.display()
            )));
        };
        if cols.label.is_none() && cols.t_score.is_none() {
            return Err(DataError::Invalid(format!(
                "{}: neither a label (0/1/2) nor a T-score column found; name one with --column label=<header> or --column t_score=<header>",
                path.display()
            )));
        }
        let mut records = BTreeMap::new();
        for row in 0..table.rows.len() {
            let Some(id) = table.cell(row, Some(id_col)).and_then(id_number) else {
                continue;
            };
            let t = table.number(row, cols.t_score);
            let label = table
                .number(row, cols.label)
                .map(|v| v as u8)
                .or_else(|| t.map(who_class));
            let record = ClinicalRecord {
                patient: format!("{id:03}"),
                label,
                t_score: t,
                sex: table.cell(row, cols.sex).and_then(parse_sex),
                age_years: table.number(row, cols.age),
                weight_kg: table.number(row, cols.weight),
                height_m: table.number(row, cols.height).map(metres),
                bmi: table.number(row, cols.bmi),
                menopause_years: None,
            };
            records.insert(id, (record, table.number(row, cols.bmd)));
        }
        let samples = radiographs(root, &records, &mut notes)?;
        let ct = root.join("lumos_ct");
        if ct.is_dir() {
            let n = std::fs::read_dir(&ct).map_err(io_err(&ct))?.count();
            notes.push(format!(
                "lumos_ct: {n} CT folders (not used by the X-ray trainer)"
            ));
        }
        Ok(Dataset {
            samples,
            records: records.into_values().map(|(r, _)| r).collect(),
            notes,
            ..Dataset::default()
        })
    }
}

/// The detected columns of the clinical sheet.
struct Columns {
    patient: Option<usize>,
    label: Option<usize>,
    t_score: Option<usize>,
    bmd: Option<usize>,
    sex: Option<usize>,
    age: Option<usize>,
    weight: Option<usize>,
    height: Option<usize>,
    bmi: Option<usize>,
}

impl Columns {
    fn find(t: &Table, o: &ColumnOverrides, notes: &mut Vec<String>) -> Result<Self, DataError> {
        let mut f = |name, patterns, prefer, values_ok| {
            t.find(
                &Role {
                    name,
                    patterns,
                    prefer,
                    values_ok,
                },
                o,
                notes,
            )
        };
        Ok(Columns {
            patient: f(
                "patient",
                &[
                    &["patient"],
                    &["id"],
                    &["case"],
                    &["subject"],
                    &["number"],
                    &["no"],
                ],
                &["patient", "id"],
                unique_ids,
            )?,
            label: f(
                "label",
                &[
                    &["label"],
                    &["class"],
                    &["group"],
                    &["diagnos"],
                    &["category"],
                    &["who"],
                ],
                &["label", "class"],
                columns::class_values,
            )?,
            t_score: f(
                "t_score",
                &[&["tscore"], &["t", "score"]],
                &["l1l4", "total", "lumbar", "spine", "mean"],
                columns::t_values,
            )?,
            bmd: f(
                "bmd",
                &[&["bmd"], &["density"]],
                &["l1l4", "total", "lumbar", "spine", "mean"],
                columns::bmd_values,
            )?,
            sex: f("sex", &[&["sex"], &["gender"]], &[], columns::any_values)?,
            age: f("age", &[&["age"]], &[], columns::numeric)?,
            weight: f("weight", &[&["weight"]], &[], columns::numeric)?,
            height: f("height", &[&["height"]], &[], columns::numeric)?,
            bmi: f("bmi", &[&["bmi"]], &[], columns::numeric)?,
        })
    }
}

/// Every value an identifier with a number, no number twice.
fn unique_ids(values: &[&str]) -> bool {
    let ids: Option<Vec<u64>> = values.iter().map(|v| id_number(v)).collect();
    ids.is_some_and(|ids| {
        let set: std::collections::BTreeSet<_> = ids.iter().collect();
        !ids.is_empty() && set.len() == ids.len()
    })
}

/// 'F' or 'M' from common spellings.
pub fn parse_sex(s: &str) -> Option<char> {
    match s.trim().to_ascii_lowercase().as_str() {
        "f" | "female" | "woman" | "w" => Some('F'),
        "m" | "male" | "man" => Some('M'),
        _ => None,
    }
}

/// Heights in cm become metres.
pub fn metres(h: f64) -> f64 {
    if h > 3.0 {
        h / 100.0
    } else {
        h
    }
}

/// The first sheet of an .xlsx/.xls/.ods as text; the header is the first row with at
/// least two non-empty cells (a title row above it is skipped).
pub fn read_xlsx(path: &Path) -> Result<Table, DataError> {
    let err = |message: String| DataError::Xlsx {
        path: path.to_path_buf(),
        message,
    };
    let mut wb = open_workbook_auto(path).map_err(|e| err(e.to_string()))?;
    let first = wb
        .sheet_names()
        .first()
        .cloned()
        .ok_or_else(|| err("no sheets".into()))?;
    let range = wb.worksheet_range(&first).map_err(|e| err(e.to_string()))?;
    let mut rows = range
        .rows()
        .map(|r| r.iter().map(|c| c.to_string()).collect::<Vec<String>>());
    let headers = rows
        .by_ref()
        .find(|r| r.iter().filter(|c| !c.trim().is_empty()).count() >= 2)
        .ok_or_else(|| err("no header row".into()))?;
    Ok(Table {
        headers,
        rows: rows.collect(),
    })
}

/// The digit groups of a name ("lumos_x_741_670" -> [741, 670]).
fn numbers(name: &str) -> Vec<u64> {
    name.split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Radiographs under `lumos_x/lumos_x_NNN/` (files `lumos_x_NNN_K`), each joined to
/// patient NNN's row. The folder names the patient; a file whose name says another patient,
/// or repeats another file's image number K (the archive's known typo, `lumos_x_741_670`
/// for `741_770`), is kept under its folder's patient, and noted.
fn radiographs(
    root: &Path,
    records: &BTreeMap<u64, (ClinicalRecord, Option<f64>)>,
    notes: &mut Vec<String>,
) -> Result<Vec<Sample>, DataError> {
    let dir = root.join("lumos_x");
    if !dir.is_dir() {
        notes.push("no lumos_x folder: clinical rows only".into());
        return Ok(Vec::new());
    }
    let mut samples = Vec::new();
    let mut seen: BTreeMap<u64, PathBuf> = BTreeMap::new();
    let (mut unmatched, mut unlabelled) = (0, 0);
    let mut folders: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(io_err(&dir))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    folders.sort();
    for folder in folders {
        let name = folder.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let Some(&id) = numbers(name).first() else {
            notes.push(format!(
                "{name}: folder name has no patient number; skipped"
            ));
            continue;
        };
        let Some((record, bmd)) = records.get(&id) else {
            unmatched += 1;
            continue;
        };
        let Some(label) = record.label else {
            unlabelled += 1;
            continue;
        };
        for file in files_with(&folder, &["dcm", "dicom"])? {
            let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            let n = numbers(stem);
            if n.first() != Some(&id) {
                notes.push(format!(
                    "{}: name does not match its folder {name}; kept as patient {id:03}",
                    file.display()
                ));
            } else if let Some(k) = n.get(1) {
                if let Some(other) = seen.insert(*k, file.clone()) {
                    notes.push(format!(
                        "{} and {}: the same image number {k} (the archive's known typo, e.g. lumos_x_741_670 for 741_770); both kept",
                        other.display(),
                        file.display()
                    ));
                }
            }
            samples.push(Sample {
                image: file,
                patient: record.patient.clone(),
                study: record.patient.clone(),
                label,
                t_score: record.t_score.map(|t| t as f32),
                bmd: bmd.map(|b| b as f32),
                view: None,
            });
        }
    }
    if unmatched > 0 {
        notes.push(format!(
            "{unmatched} image folders have no clinical row; skipped"
        ));
    }
    if unlabelled > 0 {
        notes.push(format!(
            "{unlabelled} patients have neither label nor T-score; skipped"
        ));
    }
    Ok(samples)
}
