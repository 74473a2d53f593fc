//! Guards the candle version (REFERENCES.md): candle 0.9.1 computed wrong conv2d weight
//! gradients for batch > 1 and 0.9.2's tiled conv was wrong when C == H == W. Training
//! relies on both, so check autograd against finite differences on exactly those shapes.

use candle_core::{DType, Device, Tensor, Var};

fn loss(x: &Tensor, w: &Tensor) -> Tensor {
    let y = x.conv2d(w, 1, 1, 1, 1).unwrap();
    y.sqr().unwrap().sum_all().unwrap()
}

#[test]
fn conv2d_weight_gradients_match_finite_differences() {
    let dev = Device::Cpu;
    // Batch 2, and C == H == W == 4.
    let x = Tensor::randn(0f64, 1.0, (2, 4, 4, 4), &dev).unwrap();
    let w = Var::from_tensor(&Tensor::randn(0f64, 0.5, (3, 4, 3, 3), &dev).unwrap()).unwrap();
    let grads = loss(&x, w.as_tensor()).backward().unwrap();
    let analytic = grads
        .get(w.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    let base = w
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    let eps = 1e-5;
    for idx in [0, 7, 20, 55, 80, 107] {
        let mut plus = base.clone();
        let mut minus = base.clone();
        plus[idx] += eps;
        minus[idx] -= eps;
        let at = |v: Vec<f64>| {
            let t = Tensor::from_vec(v, (3, 4, 3, 3), &dev).unwrap();
            loss(&x, &t).to_scalar::<f64>().unwrap()
        };
        let numeric = (at(plus) - at(minus)) / (2.0 * eps);
        let diff = (numeric - analytic[idx]).abs();
        assert!(
            diff <= 1e-4 * (1.0 + numeric.abs()),
            "weight {idx}: autograd {} vs finite difference {numeric}",
            analytic[idx]
        );
    }
    assert_eq!(w.dtype(), DType::F64);
}
