//! Column detection for spreadsheets whose headers are not published: a header is matched
//! by patterns (case, spaces and punctuation ignored) and its values checked, an explicit
//! `--column role=header` wins, and what was matched is reported.

use super::{ColumnOverrides, DataError};

/// A sheet read as text: headers and rows of cells (numbers as their decimal text).
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// How one role's column is recognised.
pub struct Role<'a> {
    pub name: &'a str,
    /// A header matches when it contains every part of one of these alternatives
    /// (normalised: lower case, letters and digits only).
    pub patterns: &'a [&'a [&'a str]],
    /// Preferred among several matches: a header containing one of these wins.
    pub prefer: &'a [&'a str],
    /// The column's non-empty values must pass this.
    pub values_ok: fn(&[&str]) -> bool,
}

/// Lower case, letters and digits only ("L1-L4 T-score" -> "l1l4tscore").
pub fn normalise(header: &str) -> String {
    header
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

impl Table {
    /// Non-empty values of column `c`.
    pub fn values(&self, c: usize) -> Vec<&str> {
        self.rows
            .iter()
            .filter_map(|r| r.get(c).map(|s| s.trim()))
            .filter(|s| !s.is_empty())
            .collect()
    }

    pub fn cell(&self, row: usize, c: Option<usize>) -> Option<&str> {
        let v = self.rows.get(row)?.get(c?)?.trim();
        (!v.is_empty()).then_some(v)
    }

    pub fn number(&self, row: usize, c: Option<usize>) -> Option<f64> {
        self.cell(row, c)?
            .replace(',', ".")
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
    }

    /// The column for `role`: the override when given (it must exist), else the best
    /// header match whose values pass. `notes` gets one line saying what was used.
    pub fn find(
        &self,
        role: &Role,
        overrides: &ColumnOverrides,
        notes: &mut Vec<String>,
    ) -> Result<Option<usize>, DataError> {
        if let Some(h) = overrides.get(role.name) {
            let c = self
                .headers
                .iter()
                .position(|x| x.trim() == h || normalise(x) == normalise(h))
                .ok_or_else(|| {
                    DataError::Invalid(format!(
                        "--column {}={h:?}: no such column (columns: {})",
                        role.name,
                        self.headers.join(", ")
                    ))
                })?;
            notes.push(format!(
                "{}: column {:?} (given)",
                role.name, self.headers[c]
            ));
            return Ok(Some(c));
        }
        let matching: Vec<usize> = (0..self.headers.len())
            .filter(|&c| {
                let h = normalise(&self.headers[c]);
                role.patterns
                    .iter()
                    .any(|alt| alt.iter().all(|p| h.contains(p)))
                    && (role.values_ok)(&self.values(c))
            })
            .collect();
        let chosen = matching
            .iter()
            .copied()
            .find(|&c| {
                let h = normalise(&self.headers[c]);
                role.prefer.iter().any(|p| h.contains(p))
            })
            .or_else(|| matching.first().copied());
        match chosen {
            Some(c) => notes.push(format!("{}: column {:?}", role.name, self.headers[c])),
            None => notes.push(format!("{}: no column matched", role.name)),
        }
        Ok(chosen)
    }
}

/// Every value a number.
pub fn numeric(values: &[&str]) -> bool {
    !values.is_empty()
        && values
            .iter()
            .all(|v| v.replace(',', ".").parse::<f64>().is_ok())
}

/// Every value 0, 1 or 2 (as integers or "0.0"), at least two distinct.
pub fn class_values(values: &[&str]) -> bool {
    let parsed: Option<Vec<i64>> = values
        .iter()
        .map(|v| {
            let f: f64 = v.parse().ok()?;
            (f.fract() == 0.0 && (0.0..=2.0).contains(&f)).then_some(f as i64)
        })
        .collect();
    parsed.is_some_and(|p| {
        !p.is_empty() && p.iter().collect::<std::collections::BTreeSet<_>>().len() >= 2
    })
}

/// Plausible T-scores (-7..+6).
pub fn t_values(values: &[&str]) -> bool {
    numeric(values)
        && values
            .iter()
            .all(|v| (-7.0..=6.0).contains(&v.replace(',', ".").parse::<f64>().unwrap_or(99.0)))
}

/// Plausible areal BMD in g/cm² (0.2..2.5).
pub fn bmd_values(values: &[&str]) -> bool {
    numeric(values)
        && values
            .iter()
            .all(|v| (0.2..=2.5).contains(&v.replace(',', ".").parse::<f64>().unwrap_or(99.0)))
}

/// Anything non-empty.
pub fn any_values(values: &[&str]) -> bool {
    !values.is_empty()
}

/// The integer in an identifier ("lumos_x_012" -> 12, "12.0" -> 12).
pub fn id_number(s: &str) -> Option<u64> {
    if let Ok(f) = s.trim().parse::<f64>() {
        return (f >= 0.0 && f.fract() == 0.0).then_some(f as u64);
    }
    let digits: String = s
        .chars()
        .rev()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit())
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        Table {
            headers: vec![
                "Patient No".into(),
                "Age".into(),
                "BMD L1-L4 (g/cm2)".into(),
                "T-score femoral neck".into(),
                "T-score L1-L4".into(),
                "Group".into(),
            ],
            rows: vec![
                vec!["1", "61", "0.91", "-1.2", "-1.4", "1"],
                vec!["2", "70", "0.71", "-2.9", "-3.1", "2"],
                vec!["3", "45", "1.10", "0.2", "0.5", "0"],
            ]
            .into_iter()
            .map(|r| r.into_iter().map(String::from).collect())
            .collect(),
        }
    }

    #[test]
    fn headers_are_matched_by_pattern_preference_and_values() {
        let t = table();
        let mut notes = Vec::new();
        let none = ColumnOverrides::default();
        let role = Role {
            name: "t_score",
            patterns: &[&["tscore"]],
            prefer: &["l1l4"],
            values_ok: t_values,
        };
        assert_eq!(t.find(&role, &none, &mut notes).unwrap(), Some(4));
        let label = Role {
            name: "label",
            patterns: &[&["group"], &["label"]],
            prefer: &[],
            values_ok: class_values,
        };
        assert_eq!(t.find(&label, &none, &mut notes).unwrap(), Some(5));
        // Age matches no class pattern's values.
        let bad = Role {
            name: "label",
            patterns: &[&["age"]],
            prefer: &[],
            values_ok: class_values,
        };
        assert_eq!(t.find(&bad, &none, &mut notes).unwrap(), None);
        let over = ColumnOverrides::parse(&["t_score=T-score femoral neck".into()]).unwrap();
        assert_eq!(t.find(&role, &over, &mut notes).unwrap(), Some(3));
        let missing = ColumnOverrides::parse(&["t_score=nope".into()]).unwrap();
        assert!(t.find(&role, &missing, &mut notes).is_err());
        assert!(
            notes.iter().any(|n| n.contains("T-score L1-L4")),
            "{notes:?}"
        );
    }

    #[test]
    fn identifiers_give_their_number() {
        assert_eq!(id_number("lumos_x_012"), Some(12));
        assert_eq!(id_number("12.0"), Some(12));
        assert_eq!(id_number("P-0007"), Some(7));
        assert_eq!(id_number("none"), None);
    }
}
