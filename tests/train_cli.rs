//! `osteoscreen train`, `eval` and `train-risk` as a user runs them, and the bundled demo
//! weights as the daemon's default.

mod common;

use std::path::Path;
use std::process::Command;

use common::models::*;
use common::*;

fn sha256(path: &Path) -> String {
    osteoscreen::model::card::sha256_file(path).unwrap()
}

#[test]
fn two_epochs_learn_resume_continues_and_the_seed_decides() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    synth_set(&data, 30, 21, "256x320");

    let a = work.path().join("a");
    let out = train(&data, &a, &["--epochs", "2", "--seed", "4"]);
    assert!(out.status.success(), "{}", text(&out));
    let log = text(&out);
    assert!(log.contains("60 images of 30 patients"), "{log}");
    assert!(log.contains("epoch   2:"), "{log}");
    let c = card(&a);
    let history = c["training"]["history"].as_array().unwrap();
    let loss = |i: usize| history[i]["train_loss"].as_f64().unwrap();
    assert!(
        loss(1) < loss(0),
        "loss did not fall: {} then {}",
        loss(0),
        loss(1)
    );
    // The card: what it is, what it saw, how it did, and the sha256 of the weights.
    let weights = a.join("osteoscreen-xray.safetensors");
    assert_eq!(c["weights_sha256"], sha256(&weights));
    assert_eq!(c["training"]["split_seed"], 4);
    let split = &c["training"]["split"];
    let images = |p: &str| split[p]["images"].as_u64().unwrap();
    assert_eq!(images("train") + images("validation") + images("test"), 60);
    assert!(c["metrics"]["held_out_test"]["accuracy"].is_number());
    assert!(c["feature_profile"]["threshold"].as_f64().unwrap() > 0.0);
    // It loads (card and sha256 checked) and predicts.
    let model =
        osteoscreen::model::XrayModel::load(&weights, None, candle_core::Device::Cpu).unwrap();
    let p = model
        .predict(&[vec![0.1; 256 * 256]])
        .unwrap()
        .pop()
        .unwrap();
    assert!((p.probabilities.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    assert!(p.feature_distance.is_some());

    // Same seed, same weights (and the same checkpoint, optimiser moments included).
    let b = work.path().join("b");
    assert!(train(&data, &b, &["--epochs", "2", "--seed", "4"])
        .status
        .success());
    assert_eq!(
        sha256(&weights),
        sha256(&b.join("osteoscreen-xray.safetensors"))
    );
    let last = |d: &Path| sha256(&d.join("osteoscreen-xray-checkpoint/last.safetensors"));
    assert_eq!(last(&a), last(&b));

    // One epoch, then --resume to two: the same as two in one go.
    let r = work.path().join("r");
    assert!(train(&data, &r, &["--epochs", "1", "--seed", "4"])
        .status
        .success());
    assert_ne!(last(&r), last(&a));
    let out = train(&data, &r, &["--epochs", "2", "--seed", "4", "--resume"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("resuming after epoch 1"),
        "{}",
        text(&out)
    );
    assert_eq!(last(&r), last(&a));
    // Resuming another run's checkpoint is refused, and so is resuming nothing.
    let out = train(&data, &r, &["--epochs", "3", "--seed", "5", "--resume"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("another run"), "{}", text(&out));
    let out = train(
        &data,
        &work.path().join("none"),
        &["--epochs", "1", "--resume"],
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("no checkpoint"), "{}", text(&out));

    // Another seed, other weights.
    let s = work.path().join("s");
    assert!(train(&data, &s, &["--epochs", "1", "--seed", "9"])
        .status
        .success());
    assert_ne!(last(&s), last(&r));
}

/// `--normalisation equalised`: the card says so, a resume with the other input is
/// refused, and `eval` preprocesses as the card says (the same weights under a card that
/// says robust predict otherwise).
/// `eval`'s predictions.csv for the model in `model_dir`, read as trained and read from a
/// copy in `copy_dir` whose card's `input` says `input` instead.
fn predictions_as_trained_and_under(
    model_dir: &Path,
    input: &str,
    copy_dir: &Path,
    data: &Path,
) -> (String, String) {
    let weights = model_dir.join("osteoscreen-xray.safetensors");
    std::fs::create_dir_all(copy_dir).unwrap();
    std::fs::copy(&weights, copy_dir.join("osteoscreen-xray.safetensors")).unwrap();
    let mut c = card(model_dir);
    c["input"] = input.into();
    std::fs::write(copy_dir.join("osteoscreen-xray.json"), c.to_string()).unwrap();
    let predictions = |model: &Path| {
        let dir = model.parent().unwrap().join("eval");
        let out = eval(model, data, &dir);
        assert!(out.status.success(), "{}", text(&out));
        std::fs::read_to_string(dir.join("predictions.csv")).unwrap()
    };
    (
        predictions(&weights),
        predictions(&copy_dir.join("osteoscreen-xray.safetensors")),
    )
}

#[test]
fn equalised_input_is_recorded_in_the_card_and_used_wherever_the_model_runs() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    synth_set(&data, 12, 23, "256x320");
    let m = work.path().join("m");
    let eq = [
        "--epochs",
        "1",
        "--seed",
        "3",
        "--normalisation",
        "equalised",
    ];
    let out = train(&data, &m, &eq);
    assert!(out.status.success(), "{}", text(&out));
    let c = card(&m);
    assert_eq!(c["input"], "1x256x256 grey, histogram-equalised");
    // Too few validation patients for a covariate model: said, and none in the card.
    assert!(text(&out).contains("no covariate model"), "{}", text(&out));
    assert!(c.get("covariates").is_none());
    assert_eq!(c["training"]["options"]["normalisation"], "equalised");
    let out = train(&data, &m, &["--epochs", "2", "--seed", "3", "--resume"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("Equalised 256 px input"),
        "{}",
        text(&out)
    );
    let out = train(&data, &m, &["--epochs", "1", "--normalisation", "linear"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("robust or equalised"), "{}", text(&out));

    // The same weights under a card that says robust: other inputs, other predictions.
    let robust = work.path().join("robust");
    let (trained, other) =
        predictions_as_trained_and_under(&m, "1x256x256 grey, robust-normalised", &robust, &data);
    assert_ne!(trained, other);
    // A card naming an input this build does not know is refused, with the ones it knows.
    let mut rc = c.clone();
    rc["input"] = "1x512x512 grey, z-scored".into();
    std::fs::write(robust.join("osteoscreen-xray.json"), rc.to_string()).unwrap();
    let err = osteoscreen::model::XrayModel::load(
        &robust.join("osteoscreen-xray.safetensors"),
        None,
        candle_core::Device::Cpu,
    )
    .err()
    .expect("refused");
    assert!(err.to_string().contains("histogram-equalised"), "{err}");
}

/// `--input-size` trains at another side; the card records it and `eval` reads at it.
#[test]
fn another_input_size_is_recorded_in_the_card_and_read_at_that_size() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    synth_set(&data, 12, 31, "256x320");
    let m = work.path().join("m");
    let small = ["--epochs", "1", "--seed", "3", "--input-size", "128"];
    let out = train(&data, &m, &small);
    assert!(out.status.success(), "{}", text(&out));
    let c = card(&m);
    assert_eq!(c["input"], "1x128x128 grey, robust-normalised");
    assert_eq!(c["training"]["options"]["input_size"], 128);
    let out = train(&data, &m, &["--epochs", "2", "--seed", "3", "--resume"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("128 px input"), "{}", text(&out));
    let out = train(&data, &m, &["--epochs", "1", "--input-size", "300"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("multiple of 32"), "{}", text(&out));

    // The same weights under a card that says 256: read at 256, other predictions.
    let other = work.path().join("other");
    let (trained, at_256) =
        predictions_as_trained_and_under(&m, "1x256x256 grey, robust-normalised", &other, &data);
    assert_ne!(trained, at_256);
    // Fine-tuning the 128 px weights at 256 px: the network takes any size.
    let weights = m.join("osteoscreen-xray.safetensors");
    let init = weights.to_str().unwrap();
    let out = train(
        &data,
        &work.path().join("up"),
        &["--epochs", "1", "--seed", "3", "--init", init],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        card(&work.path().join("up"))["input"],
        "1x256x256 grey, robust-normalised"
    );
}

/// `--init` fine-tunes from given weights (the card records their sha256) and
/// `--processing multiscale` is recorded and must match on `--resume`.
#[test]
fn fine_tuning_starts_from_the_given_weights_with_the_processing_recorded() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    synth_set(&data, 12, 29, "256x320");
    let base = work.path().join("base");
    assert!(train(&data, &base, &["--epochs", "1", "--seed", "3"])
        .status
        .success());
    let base_weights = base.join("osteoscreen-xray.safetensors");
    let ms = ["--epochs", "1", "--seed", "3", "--processing", "multiscale"];

    let tuned = work.path().join("tuned");
    let init = base_weights.to_str().unwrap();
    let out = train(&data, &tuned, &[&ms[..], &["--init", init][..]].concat());
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("starting from the weights"),
        "{}",
        text(&out)
    );
    let c = card(&tuned);
    assert_eq!(c["training"]["options"]["processing"], "multiscale");
    assert_eq!(c["training"]["init_sha256"], sha256(&base_weights));
    // From scratch with the same options: other weights, so --init was used.
    let fresh = work.path().join("fresh");
    assert!(train(&data, &fresh, &ms).status.success());
    assert!(card(&fresh)["training"]["init_sha256"].is_null());
    let last = |d: &Path| sha256(&d.join("osteoscreen-xray-checkpoint/last.safetensors"));
    assert_ne!(last(&tuned), last(&fresh));
    // The multiscale augmentation changes what is learned.
    assert_ne!(last(&fresh), last(&base));

    let out = train(&data, &tuned, &["--epochs", "2", "--seed", "3", "--resume"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("Multiscale processing"),
        "{}",
        text(&out)
    );
    // Fine-tuned in place (the result written over the starting weights): the card still
    // names the weights it started from.
    let before = sha256(&base_weights);
    let out = train(
        &data,
        &base,
        &["--epochs", "1", "--seed", "3", "--init", init],
    );
    assert!(out.status.success(), "{}", text(&out));
    let c = card(&base);
    assert_eq!(c["training"]["init_sha256"], before);
    assert_ne!(c["weights_sha256"], before);
    let card_file = base.join("osteoscreen-xray.json");
    let out = train(
        &data,
        &work.path().join("bad"),
        &["--epochs", "1", "--init", card_file.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("not weights of this network"),
        "{}",
        text(&out)
    );
}

#[test]
fn bad_training_input_is_refused_with_a_reason() {
    let work = tempfile::tempdir().unwrap();
    let out = train(work.path(), &work.path().join("m"), &["--epochs", "1"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("no known dataset layout"),
        "{}",
        text(&out)
    );
    // Two patients cannot be split into training and validation.
    let data = work.path().join("two");
    synth_set(&data, 2, 3, "256x320");
    let out = train(&data, &work.path().join("m"), &["--epochs", "1"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("too few patients"), "{}", text(&out));
}

#[test]
fn eval_of_the_bundled_weights_on_another_seed_is_clearly_above_chance() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("heldout");
    // Another seed and another detector size than the demo weights were trained on.
    synth_set(&data, 60, 9_001, "1024x1280");
    let out_dir = work.path().join("eval");
    let out = eval(&bundled(), &data, &out_dir);
    assert!(out.status.success(), "{}", text(&out));
    let printed = text(&out);
    assert!(printed.contains("published: 0.767"), "{printed}");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("metrics.json")).unwrap())
            .unwrap();
    let metrics = &m["metrics"];
    assert_eq!(metrics["studies"], 60);
    let acc = metrics["accuracy"].as_f64().unwrap();
    let f1 = metrics["macro_f1"].as_f64().unwrap();
    // Chance is about 0.36 (the largest class) and 0.33; the floors are conservative.
    assert!(acc >= 0.6, "accuracy {acc}\n{printed}");
    assert!(f1 >= 0.55, "macro-F1 {f1}\n{printed}");
    assert!(
        metrics["auc_osteoporosis"].as_f64().unwrap() >= 0.8,
        "{printed}"
    );
    for plot in ["confusion.png", "roc.png", "t_scores.png"] {
        let bytes = std::fs::read(out_dir.join(plot)).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{plot}");
        assert!(bytes.len() > 5_000, "{plot}: {} bytes", bytes.len());
    }
    // One row per study, whose predicted classes give the accuracy metrics.json reports.
    let csv = std::fs::read_to_string(out_dir.join("predictions.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 60);
    let right = rows.iter().filter(|r| r[1] == r[5]).count();
    assert!(
        (right as f64 / 60.0 - acc).abs() < 1e-9,
        "{right} right in predictions.csv, accuracy {acc}"
    );
    assert!(rows
        .iter()
        .all(|r| r[0].len() > 3 && r[6].parse::<f64>().is_ok()));
}

#[test]
fn eval_of_weights_without_their_card_names_the_card_and_says_why_once() {
    let work = tempfile::tempdir().unwrap();
    let weights = work.path().join("orphan.safetensors");
    std::fs::copy(bundled(), &weights).unwrap();
    let out = eval(&weights, work.path(), &work.path().join("eval"));
    assert!(!out.status.success());
    let printed = text(&out);
    assert!(printed.contains("orphan.json"), "{printed}");
    // The cause once: each typed error already carries it in its own message.
    let said = printed.matches("No such file or directory").count();
    assert_eq!(said, 1, "{printed}");
}

#[test]
fn train_risk_fits_compares_with_ost_and_the_daemon_uses_it() {
    let work = tempfile::tempdir().unwrap();
    let csv = work.path().join("dxa.csv");
    dxa_csv(&csv, 800);
    let model = work.path().join("risk.json");
    let out = run(Command::new(bin())
        .arg("train-risk")
        .arg("--data")
        .arg(&csv)
        .arg("--out")
        .arg(&model));
    assert!(out.status.success(), "{}", text(&out));
    let printed = text(&out);
    assert!(printed.contains("held-out rows: 200"), "{printed}");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&model).unwrap()).unwrap();
    let e = &saved["evaluation"];
    let fitted = e["fitted_auc_osteoporosis"].as_f64().unwrap();
    let ost = e["ost_auc_osteoporosis"].as_f64().unwrap();
    assert!(fitted > 0.7 && ost > 0.6, "{printed}");
    // Sex matters here and OST ignores it: the fitted model must not be worse.
    assert!(fitted >= ost - 0.03, "{printed}");

    // The daemon's engine (through `analyze`) names the fitted model in the Finding.
    let study = synth_study(&work.path().join("s"), &DX_SMALL);
    let risk_env = [("OSTEOSCREEN__ANALYSIS__RISK_MODEL", model.as_os_str())];
    let out = analyze(&study, &risk_env);
    assert!(out.status.success(), "{}", text(&out));
    let f: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(f["risk"]["status"], "known", "{f}");
    assert_eq!(f["risk"]["fitted"]["model"], "osteoscreen-risk");
    let p = f["risk"]["fitted"]["probabilities"].as_array().unwrap();
    let sum: f64 = p.iter().map(|v| v.as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-9);
    // A broken model file stops the engine with the reason.
    std::fs::write(&model, "{}").unwrap();
    let out = analyze(&study, &risk_env);
    assert!(!out.status.success());
    assert!(text(&out).contains("risk model"), "{}", text(&out));
}

#[test]
fn analyze_with_the_defaults_classifies_a_radiograph_study() {
    let work = tempfile::tempdir().unwrap();
    let study = synth_study(work.path(), &DX_SMALL);
    let reports = work.path().join("reports");
    let out = run(Command::new(bin())
        .arg("--config")
        .arg(shipped_config())
        .args(["analyze", "--json", "--out"])
        .arg(&reports)
        .arg(&study));
    assert!(out.status.success(), "{}", text(&out));
    let f: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(f["status"], "analysed", "{f}");
    let x = &f["xray"];
    assert!(["normal", "osteopenia", "osteoporosis"].contains(&x["class"].as_str().unwrap()));
    let p = x["probabilities"].as_array().unwrap();
    let sum: f64 = p.iter().map(|v| v.as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-4, "{x}");
    assert!(
        f["conclusion"]["probability"].as_f64().unwrap() > 0.33,
        "{f}"
    );
    assert!(x["t_score"].as_f64().unwrap().is_finite());
    assert_eq!(x["model"]["name"], "osteoscreen-xray-demo");
    assert!(
        x["model"]["training_data"]
            .as_str()
            .unwrap()
            .contains("trained on synthetic data; not validated on patients"),
        "{x}"
    );
    // The SR's algorithm identification says so too.
    let sr = dicom_files(&reports)
        .into_iter()
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("sr"))
        .expect("an SR");
    let bytes = std::fs::read(sr).unwrap();
    let needle = b"not validated on patients";
    assert!(bytes.windows(needle.len()).any(|w| w == needle));
}

/// `--framing spine-frontal`: lateral views are left out of training and of eval, the
/// card names the framing, a resume with another framing is refused, the daemon reads the
/// frontal view only and says so, and the same weights read whole predict otherwise.
/// `--framing spine` reads both views, in training and in the daemon.
#[test]
fn spine_framing_reads_the_square_around_the_spine() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    synth_set(&data, 12, 37, "256x320");
    let both = work.path().join("both");
    let out = train(
        &data,
        &both,
        &["--epochs", "1", "--seed", "3", "--framing", "spine"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !text(&out).contains("lateral images left out"),
        "{}",
        text(&out)
    );
    assert_eq!(
        card(&both)["input"],
        "1x256x256 grey, robust-normalised, lumbar spine 150 mm"
    );
    let out = analyze(
        &data.join("study00000"),
        &[(
            "OSTEOSCREEN__MODEL__WEIGHTS",
            both.join("osteoscreen-xray.safetensors").as_os_str(),
        )],
    );
    assert!(out.status.success(), "{}", text(&out));
    let f: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let views: Vec<String> = f["xray"]["images"]
        .as_array()
        .expect("images")
        .iter()
        .map(|i| i["view"].to_string())
        .collect();
    assert_eq!(views.len(), 2, "{f}");
    assert!(views.contains(&"\"lateral\"".to_string()), "{f}");
    assert!(!f["flags"].to_string().contains("not read"), "{f}");

    let m = work.path().join("m");
    let spine = ["--epochs", "1", "--seed", "3", "--framing", "spine-frontal"];
    let out = train(&data, &m, &spine);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("12 lateral images left out"),
        "{}",
        text(&out)
    );
    let c = card(&m);
    assert_eq!(
        c["input"],
        "1x256x256 grey, robust-normalised, lumbar spine 150 mm, frontal views"
    );
    assert_eq!(c["training"]["options"]["framing"], "spine-frontal");
    let out = train(&data, &m, &["--epochs", "2", "--seed", "3", "--resume"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("SpineFrontal framing"),
        "{}",
        text(&out)
    );
    let out = train(&data, &m, &["--epochs", "1", "--framing", "crop"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("whole, spine or spine-frontal"),
        "{}",
        text(&out)
    );

    let weights = m.join("osteoscreen-xray.safetensors");
    let out = eval(&weights, &data, &work.path().join("eval"));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("12 lateral images left out"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("12 images, 12 studies"),
        "{}",
        text(&out)
    );
    let whole = work.path().join("whole");
    let (framed, read_whole) =
        predictions_as_trained_and_under(&m, "1x256x256 grey, robust-normalised", &whole, &data);
    assert_ne!(framed, read_whole);

    // The daemon's path: the lateral view is not read, and the Finding says why.
    let out = analyze(
        &data.join("study00000"),
        &[("OSTEOSCREEN__MODEL__WEIGHTS", weights.as_os_str())],
    );
    assert!(out.status.success(), "{}", text(&out));
    let f: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let images = f["xray"]["images"].as_array().expect("images");
    assert_eq!(images.len(), 1, "{f}");
    assert_eq!(images[0]["view"], "frontal");
    assert!(
        f["flags"]
            .to_string()
            .contains("1 lateral radiograph(s) not read"),
        "{f}"
    );
}
