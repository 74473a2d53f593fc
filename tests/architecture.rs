//! The house rules about imports, checked on the source: the DICOM layer imports nothing
//! else of the crate, `report/` sees analysis only through its Finding, and the
//! top-level modules import each other without a cycle (the same table as
//! `scripts/module-deps.sh` prints).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// Every `crate::a::b...` path in the files, as the list of its segments.
fn crate_paths(files: &[PathBuf]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).unwrap();
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + "crate::".len()..];
            let path: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            out.push(
                path.split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
            );
        }
    }
    out
}

/// Top-level module -> the other top-level modules it names.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph = BTreeMap::new();
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if ["lib", "main", "cli"].contains(&name.as_str()) {
            continue;
        }
        let files = if path.is_dir() {
            rust_files(&path)
        } else {
            vec![path.clone()]
        };
        let deps: BTreeSet<String> = crate_paths(&files)
            .into_iter()
            .filter_map(|p| p.first().cloned())
            .filter(|m| *m != name)
            .collect();
        graph.insert(name, deps);
    }
    graph
}

#[test]
fn the_dicom_layer_imports_nothing_of_the_crate() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    assert!(
        graph["dicom"].is_empty(),
        "dicom imports {:?}",
        graph["dicom"]
    );
}

#[test]
fn reports_see_analysis_only_through_the_finding() {
    let report = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/report");
    for path in crate_paths(&rust_files(&report)) {
        if path.first().map(String::as_str) == Some("analysis") {
            assert_eq!(
                path.get(1).map(String::as_str),
                Some("finding"),
                "report/ uses crate::{}",
                path.join("::")
            );
        }
    }
}

#[test]
fn top_level_modules_import_each_other_without_a_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    // Depth-first search with the path so far; a module met again on it is a cycle.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if let Some(at) = path.iter().position(|p| p == m) {
            panic!("import cycle: {} -> {m}", path[at..].join(" -> "));
        }
        if done.contains(m) {
            return;
        }
        path.push(m.to_string());
        for next in graph.get(m).into_iter().flatten() {
            visit(next, graph, path, done);
        }
        path.pop();
        done.insert(m.to_string());
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        visit(m, &graph, &mut Vec::new(), &mut done);
    }
    assert!(graph.len() >= 10, "modules found: {:?}", graph.keys());
}
