//! The tabular DXA layout (like the Arak bone densitometry dataset): a CSV with one row per
//! patient, `IDENTIFIER1, SPINE_BMD, SPINE_TSCORE, HIP_*, HIPNECK_*, SEX, WEIGHT, HEIGHT,
//! BMI, ADJUSTED_AGE` (5-year bins such as `45-49`), `MENOPAUSE_YEAR` and `label`; images
//! named by IDENTIFIER1 (`<id>.png`, beside the CSV or in `images/`) when present.

use std::path::{Path, PathBuf};

use super::columns::{normalise, Table};
use super::lumos::{metres, parse_sex};
use super::Sample;
use super::{io_err, who_class, ClinicalRecord, ColumnOverrides, DataError, Dataset, Layout};

pub struct Tabular;

/// The CSV: `root` itself, or the first CSV in `root` with an IDENTIFIER1 column.
fn csv_file(root: &Path) -> Option<PathBuf> {
    let has_id = |p: &Path| {
        csv::Reader::from_path(p)
            .ok()
            .and_then(|mut r| r.headers().ok().cloned())
            .is_some_and(|h| h.iter().any(|c| normalise(c) == "identifier1"))
    };
    if root.is_file() {
        return has_id(root).then(|| root.to_path_buf());
    }
    // Only the folder itself: an image folder beside the CSV may hold thousands of files.
    let mut csvs: Vec<PathBuf> = std::fs::read_dir(root)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")))
        .collect();
    csvs.sort();
    csvs.into_iter().find(|p| has_id(p))
}

impl Layout for Tabular {
    fn name(&self) -> &'static str {
        "tabular DXA"
    }

    fn detect(&self, root: &Path) -> bool {
        csv_file(root).is_some()
    }

    fn load(&self, root: &Path, overrides: &ColumnOverrides) -> Result<Dataset, DataError> {
        let path = csv_file(root).ok_or_else(|| {
            DataError::Invalid(format!("{}: no CSV with IDENTIFIER1", root.display()))
        })?;
        let table = read_csv(&path)?;
        let col = |role: &str, default: &str| {
            let want = normalise(overrides.get(role).unwrap_or(default));
            table.headers.iter().position(|h| normalise(h) == want)
        };
        let id = col("patient", "IDENTIFIER1");
        let t = col("t_score", "SPINE_TSCORE");
        let bmd = col("bmd", "SPINE_BMD");
        let label = col("label", "label");
        let (sex, weight, height, bmi) = (
            col("sex", "SEX"),
            col("weight", "WEIGHT"),
            col("height", "HEIGHT"),
            col("bmi", "BMI"),
        );
        let (age, menopause) = (
            col("age", "ADJUSTED_AGE"),
            col("menopause", "MENOPAUSE_YEAR"),
        );
        let mut notes = vec![format!(
            "{}: {} rows; columns used: patient {}, t_score {}, bmd {}, label {}",
            path.display(),
            table.rows.len(),
            name(&table, id),
            name(&table, t),
            name(&table, bmd),
            name(&table, label),
        )];
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let mut records = Vec::new();
        let mut samples = Vec::new();
        for row in 0..table.rows.len() {
            let Some(patient) = table.cell(row, id).map(str::to_string) else {
                continue;
            };
            let t_score = table.number(row, t);
            let record = ClinicalRecord {
                patient: patient.clone(),
                label: table
                    .cell(row, label)
                    .and_then(parse_label)
                    .or_else(|| t_score.map(who_class)),
                t_score,
                // Numeric sex codes are not guessed (which number is which is not
                // published); such rows count as sex unknown, and the count is noted.
                sex: table.cell(row, sex).and_then(parse_sex),
                age_years: table.cell(row, age).and_then(parse_age),
                weight_kg: table.number(row, weight),
                height_m: table.number(row, height).map(metres),
                bmi: table.number(row, bmi),
                menopause_years: table.number(row, menopause),
            };
            if let (Some(label), Some(image)) = (record.label, image_of(&dir, &patient)) {
                samples.push(Sample {
                    image,
                    patient: patient.clone(),
                    study: patient.clone(),
                    label,
                    t_score: t_score.map(|t| t as f32),
                    bmd: table.number(row, bmd).map(|b| b as f32),
                    view: None,
                });
            }
            records.push(record);
        }
        notes.push(format!("{} rows have an image", samples.len()));
        let unknown_sex = records.iter().filter(|r| r.sex.is_none()).count();
        if unknown_sex > 0 {
            notes.push(format!(
                "{unknown_sex} rows without a readable SEX (F/M, female/male)"
            ));
        }
        Ok(Dataset {
            samples,
            records,
            notes,
            ..Dataset::default()
        })
    }
}

fn name(t: &Table, c: Option<usize>) -> String {
    c.map_or("(none)".into(), |c| format!("{:?}", t.headers[c]))
}

/// `<id>.png` beside the CSV or in `images/`.
fn image_of(dir: &Path, id: &str) -> Option<PathBuf> {
    if id.contains(['/', '\\']) || id.starts_with('.') {
        return None;
    }
    [
        dir.join(format!("{id}.png")),
        dir.join("images").join(format!("{id}.png")),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// 0/1/2, or the class's name.
pub fn parse_label(s: &str) -> Option<u8> {
    let l = s.trim().to_ascii_lowercase();
    match l.as_str() {
        "normal" => Some(0),
        "osteopenia" | "osteopenic" | "low bone mass" => Some(1),
        "osteoporosis" | "osteoporotic" => Some(2),
        _ => l
            .parse::<f64>()
            .ok()
            .filter(|v| [0.0, 1.0, 2.0].contains(v))
            .map(|v| v as u8),
    }
}

/// Age from a number or a 5-year bin ("45-49" -> 47).
pub fn parse_age(s: &str) -> Option<f64> {
    if let Ok(v) = s.trim().parse::<f64>() {
        return Some(v);
    }
    let (a, b) = s.split_once('-')?;
    let (a, b): (f64, f64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (a <= b).then_some((a + b) / 2.0)
}

/// A CSV as text.
pub fn read_csv(path: &Path) -> Result<Table, DataError> {
    let err = |source| DataError::Csv {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(file);
    let headers = reader
        .headers()
        .map_err(err)?
        .iter()
        .map(String::from)
        .collect();
    let mut rows = Vec::new();
    for rec in reader.records() {
        rows.push(rec.map_err(err)?.iter().map(String::from).collect());
    }
    Ok(Table { headers, rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_labels_parse() {
        assert_eq!(parse_age("45-49"), Some(47.0));
        assert_eq!(parse_age("63"), Some(63.0));
        assert_eq!(parse_age("old"), None);
        assert_eq!(parse_label("Osteoporosis"), Some(2));
        assert_eq!(parse_label("1"), Some(1));
        assert_eq!(parse_label("3"), None);
    }
}
