//! `osteoscreen readout`: the card's read-out of the network's T-score, fitted on labelled
//! studies and applied wherever the model runs (`eval`, the daemon's analysis).

mod common;

use std::path::Path;
use std::process::Command;

use common::models::*;
use common::*;

fn card_of(weights: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(weights.with_extension("json")).unwrap()).unwrap()
}

/// T = intercept + slope x network T, as the card says.
fn mapped(readout: &serde_json::Value, network_t: f64) -> f64 {
    readout["t_intercept"].as_f64().unwrap() + readout["t_slope"].as_f64().unwrap() * network_t
}

#[test]
fn readout_is_fitted_into_the_card_and_eval_and_analyze_report_through_it() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    synth_set(&data, 40, 41, "256x320");
    let m = work.path().join("m");
    let weights = bundled_with(&m, |c| {
        c.as_object_mut().unwrap().remove("readout");
    });
    let c = card_of(&weights);
    let readout = |data: &Path, extra: &[&str]| {
        run(Command::new(bin())
            .arg("readout")
            .arg("--model")
            .arg(&weights)
            .arg("--data")
            .arg(data)
            .args(extra))
    };

    // Too few studies: refused with the count, the card left as it was.
    let few = work.path().join("few");
    synth_set(&few, 12, 42, "256x320");
    let out = readout(&few, &[]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("12 studies with a class; at least 30"),
        "{}",
        text(&out)
    );
    assert!(card_of(&weights).get("readout").is_none());

    // Fitted on the studies as given and adapted to them: two readings a study.
    let out = readout(&data, &["--site-adapt", "--force"]);
    assert!(out.status.success(), "{}", text(&out));
    let printed = text(&out);
    assert!(printed.contains("(80 readings)"), "{printed}");
    assert!(
        printed.contains("5-fold cross-validated accuracy: read out"),
        "{printed}"
    );
    let fitted = card_of(&weights);
    let r = fitted["readout"].clone();
    assert!(r["t_slope"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["scale"].as_f64().unwrap() > 0.0, "{r}");
    assert_eq!(r["readings"], 80);
    assert!(r["evaluation"]["cross_validated_accuracy"]["read_out"].is_number());
    assert_eq!(
        fitted["weights_sha256"], c["weights_sha256"],
        "weights untouched"
    );

    // More sets fitted on together: one reading a study without --site-adapt.
    let other = work.path().join("other.json");
    let out = readout(
        &data,
        &[
            "--more-data",
            few.to_str().unwrap(),
            "--force",
            "--card-out",
            other.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("(52 readings)"), "{}", text(&out));
    let more: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&other).unwrap()).unwrap();
    assert_eq!(more["readout"]["readings"], 52);
    // The same studies given twice would be fitted on and scored in different folds.
    let out = readout(&data, &["--more-data", data.to_str().unwrap(), "--force"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("is in more than one of the sets"),
        "{}",
        text(&out)
    );

    // eval reports through it, the network's own T kept beside (predictions.csv).
    let dir = work.path().join("eval");
    let out = eval(&weights, &data, &dir);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("the network's own result: accuracy"),
        "{}",
        text(&out)
    );
    let mut rows = csv::Reader::from_path(dir.join("predictions.csv")).unwrap();
    let mut n = 0;
    for row in rows.deserialize::<std::collections::HashMap<String, String>>() {
        let row = row.unwrap();
        let num = |k: &str| row[k].parse::<f64>().unwrap();
        assert!(
            (num("t_pred") - mapped(&r, num("t_network"))).abs() < 1e-3,
            "{row:?}"
        );
        let p: f64 = ["p_normal", "p_osteopenia", "p_osteoporosis"]
            .iter()
            .map(|k| num(k))
            .sum();
        assert!((p - 1.0).abs() < 1e-4, "{row:?}");
        // The class is the most probable; the T-score's own unless near a cut-off.
        let t = num("t_pred");
        if (t + 1.0).abs() > 0.5 && (t + 2.5).abs() > 0.5 {
            assert_eq!(row["predicted"], row["class_from_t_pred"], "{row:?}");
        }
        n += 1;
    }
    assert_eq!(n, 40);

    // The daemon's analysis: the reported T is the read-out's, the network's kept and
    // named in the fusion (which the SR carries).
    let study = synth_study(work.path(), &DX_SMALL);
    let env = [("OSTEOSCREEN__MODEL__WEIGHTS", weights.as_os_str())];
    let finding = |study: &Path| {
        let out = analyze(study, &env);
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let f = finding(&study);
    let x = &f["xray"];
    let network_t = x["network"]["t_score"]
        .as_f64()
        .expect("network reading kept");
    assert!(
        (x["t_score"].as_f64().unwrap() - mapped(&r, network_t)).abs() < 1e-3,
        "{x}"
    );
    assert!(
        x["fusion"]
            .as_str()
            .unwrap()
            .contains("read out as fitted on looks it had not learned"),
        "{x}"
    );
    let flags = f["flags"].to_string();
    if x["class"] == x["class_from_t_score"] {
        assert!(!flags.contains("near a WHO cut-off"), "{f}");
    } else {
        assert!(flags.contains("near a WHO cut-off"), "{f}");
    }

    // `[model] readout = false`: the network's own result again.
    let off = [
        env[0],
        ("OSTEOSCREEN__MODEL__READOUT", std::ffi::OsStr::new("false")),
    ];
    let out = analyze(&study, &off);
    assert!(out.status.success(), "{}", text(&out));
    let f: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(f["xray"].get("network").is_none(), "{f}");
    assert!(
        (f["xray"]["t_score"].as_f64().unwrap() - network_t).abs() < 1e-4,
        "{f}"
    );

    // A broken read-out in a card is refused at load, with the reason.
    let mut broken = fitted.clone();
    broken["readout"]["scale"] = serde_json::json!(-1.0);
    std::fs::write(weights.with_extension("json"), broken.to_string()).unwrap();
    let out = eval(&weights, &data, &work.path().join("eval2"));
    assert!(!out.status.success());
    assert!(text(&out).contains("readout"), "{}", text(&out));
}
