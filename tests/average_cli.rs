//! `osteoscreen average` as a user runs it: networks fine-tuned from one start averaged
//! into one, measured beside each member on held-out studies; what cannot be averaged is
//! refused with a reason.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::models::*;
use common::*;

fn average(members: &[&Path], out: &Path, data: &Path) -> Output {
    run(Command::new(bin())
        .arg("average")
        .args(members)
        .arg("--out")
        .arg(out)
        .args(["--name", "soup", "--device", "cpu"])
        .arg("--data")
        .arg(data))
}

fn weights(dir: &Path) -> PathBuf {
    dir.join("osteoscreen-xray.safetensors")
}

#[test]
fn fine_tunes_of_one_start_average_into_one_measured_network() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    synth_set(&data, 12, 51, "256x320");
    let held = work.path().join("held");
    synth_set(&held, 8, 52, "256x320");
    let dir = |n: &str| work.path().join(n);
    assert!(
        train(&data, &dir("base"), &["--epochs", "1", "--seed", "3"])
            .status
            .success()
    );
    let base = weights(&dir("base"));
    let init = base.to_str().unwrap();
    for (name, seed) in [("a", "4"), ("b", "5")] {
        let out = train(
            &data,
            &dir(name),
            &["--epochs", "1", "--seed", seed, "--init", init],
        );
        assert!(out.status.success(), "{}", text(&out));
    }
    let (a, b) = (weights(&dir("a")), weights(&dir("b")));

    let out = average(&[&base, &a, &b], &dir("soup"), &held);
    assert!(out.status.success(), "{}", text(&out));
    let printed = text(&out);
    assert!(printed.contains("on 8 held-out studies"), "{printed}");
    assert_eq!(printed.matches("  member ").count(), 3, "{printed}");
    assert!(printed.contains("  average soup"), "{printed}");

    // Every tensor, batch-norm statistics included, is the members' mean.
    let soup = dir("soup").join("soup.safetensors");
    let load = |p: &Path| candle_core::safetensors::load(p, &candle_core::Device::Cpu).unwrap();
    let members = [load(&base), load(&a), load(&b)];
    let averaged = load(&soup);
    assert_eq!(averaged.len(), members[0].len());
    let mut differs = false;
    for (name, t) in &averaged {
        let got: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        let each: Vec<Vec<f32>> = members
            .iter()
            .map(|m| m[name].flatten_all().unwrap().to_vec1().unwrap())
            .collect();
        for (i, g) in got.iter().enumerate() {
            let mean = (each[0][i] + each[1][i] + each[2][i]) / 3.0;
            assert!((g - mean).abs() <= 1e-5 * (1.0 + mean.abs()), "{name}[{i}]");
            differs |= each[0][i] != each[1][i];
        }
    }
    assert!(differs, "the fine-tunes should differ from their start");

    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(soup.with_extension("json")).unwrap())
            .unwrap();
    assert_eq!(
        c["weights_sha256"],
        osteoscreen::model::card::sha256_file(&soup).unwrap()
    );
    assert_eq!(
        c["training"]["averaged"]["members"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(c["metrics"]["held_out_test"]["studies"], 8);
    assert_eq!(
        c["metrics"]["members_on_held_out_data"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        c["feature_profile"]["mean"].as_array().unwrap().len(),
        osteoscreen::model::net::FEATURES
    );
    assert!(c.get("covariates").is_none());
    let base_card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(base.with_extension("json")).unwrap())
            .unwrap();
    assert_eq!(c["limitations"], base_card["limitations"]);
    // --limitations replaces the first member's.
    let out = run(Command::new(bin())
        .arg("average")
        .args([&a, &b])
        .arg("--out")
        .arg(dir("soup2"))
        .args([
            "--name",
            "soup2",
            "--device",
            "cpu",
            "--limitations",
            "two looks only",
        ])
        .arg("--data")
        .arg(&held));
    assert!(out.status.success(), "{}", text(&out));
    let c2: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir("soup2").join("soup2.json")).unwrap())
            .unwrap();
    assert_eq!(c2["limitations"], "two looks only");
    // It is a model like any other: eval loads and runs it.
    let out = eval(&soup, &held, &dir("eval"));
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("8 studies"), "{}", text(&out));

    // Measured on the members' own training data: refused.
    let out = average(&[&a, &b], &dir("x"), &data);
    assert!(!out.status.success());
    assert!(text(&out).contains("was trained on"), "{}", text(&out));

    // A network trained apart (from scratch), either order.
    assert!(
        train(&data, &dir("apart"), &["--epochs", "1", "--seed", "6"])
            .status
            .success()
    );
    let apart = weights(&dir("apart"));
    for pair in [[&a, &apart], [&apart, &a]] {
        let out = average(&[pair[0], pair[1]], &dir("x"), &held);
        assert!(!out.status.success());
        assert!(
            text(&out).contains("only networks fine-tuned from one start"),
            "{}",
            text(&out)
        );
    }

    // Weights that do not match their card.
    let broken = dir("broken");
    std::fs::create_dir_all(&broken).unwrap();
    let copy = weights(&broken);
    let mut bytes = std::fs::read(&b).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&copy, bytes).unwrap();
    std::fs::copy(b.with_extension("json"), copy.with_extension("json")).unwrap();
    let out = average(&[&a, &copy], &dir("x"), &held);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("do not match their model card"),
        "{}",
        text(&out)
    );

    // One network is nothing to average.
    let out = average(&[&a], &dir("x"), &held);
    assert!(!out.status.success());
    assert!(!dir("x").join("soup.safetensors").exists());
}
