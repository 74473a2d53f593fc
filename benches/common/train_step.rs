//! One training step of the bundled network (forward + backward + AdamW), timed: shared by
//! the CPU training bench and the GPU bench.

use std::time::Instant;

use candle_core::{DType, Device, Tensor, D};
use candle_nn::{VarBuilder, VarMap};

use osteoscreen::model::net::{XrayNet, INPUT_SIZE};
use osteoscreen::train::optim::AdamW;

use crate::report::median;

/// Median images/s over `runs` steps after 2 warm-ups, on random input.
pub fn candle_images_per_s(device: &Device, batch: usize, runs: usize) -> f64 {
    let varmap = VarMap::new();
    let net = XrayNet::new(VarBuilder::from_varmap(&varmap, DType::F32, device)).unwrap();
    let vars = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut opt = AdamW::new(vars, 1e-4);
    let x = Tensor::randn(0f32, 1.0, (batch, 1, INPUT_SIZE, INPUT_SIZE), device).unwrap();
    let labels = Tensor::from_vec(
        (0..batch as u32).map(|i| i % 3).collect::<Vec<_>>(),
        batch,
        device,
    )
    .unwrap();
    let t_true = Tensor::randn(0f32, 1.0, batch, device).unwrap();
    let mut times = Vec::new();
    for i in 0..runs + 2 {
        let start = Instant::now();
        let out = net.forward_t(&x, true).unwrap();
        let ce = candle_nn::loss::cross_entropy(&out.logits, &labels).unwrap();
        let mse = (&out.t_score - &t_true)
            .unwrap()
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap();
        let loss = (ce + (mse * 0.25).unwrap()).unwrap();
        let grads = loss.backward().unwrap();
        opt.step(&grads, 1e-3).unwrap();
        let _ = out
            .logits
            .argmax(D::Minus1)
            .unwrap()
            .to_vec1::<u32>()
            .unwrap();
        if i >= 2 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    batch as f64 / median(&times)
}
