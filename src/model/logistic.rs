//! Multinomial logistic regression over three classes, fitted by full-batch gradient
//! descent on the softmax cross-entropy with a little L2 on the weights (not the
//! intercepts). Small tabular models use it: the clinical risk model (`train-risk`) and
//! the card's covariate model. Inputs are expected standardised.

/// Softmax of three logits.
fn softmax3(l: &[f64]) -> [f64; 3] {
    let m = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = l.iter().map(|v| (v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    [e[0] / s, e[1] / s, e[2] / s]
}

/// Class probabilities of `x` under `w` (per class: one weight per input, then the
/// intercept).
pub fn predict(w: &[Vec<f64>], x: &[f64]) -> [f64; 3] {
    let logits: Vec<f64> = w
        .iter()
        .map(|c| c.iter().zip(x).map(|(a, b)| a * b).sum::<f64>() + c[x.len()])
        .collect();
    softmax3(&logits)
}

/// Fit 3 x (inputs + 1) coefficients, intercept last; `l2` on the weights, step 0.5.
pub fn fit(z: &[Vec<f64>], y: &[u8], l2: f64, iterations: usize) -> Vec<Vec<f64>> {
    let d = z.first().map_or(0, Vec::len);
    let mut w = vec![vec![0.0; d + 1]; 3];
    let n = z.len().max(1) as f64;
    for _ in 0..iterations {
        let mut grad = vec![vec![0.0; d + 1]; 3];
        for (x, &label) in z.iter().zip(y) {
            let p = predict(&w, x);
            for (k, g) in grad.iter_mut().enumerate() {
                let e = p[k] - f64::from(u8::from(label as usize == k));
                for (gj, xj) in g.iter_mut().zip(x) {
                    *gj += e * xj / n;
                }
                g[d] += e / n;
            }
        }
        for (wk, gk) in w.iter_mut().zip(&grad) {
            for (j, (wj, gj)) in wk.iter_mut().zip(gk).enumerate() {
                let decay = if j < d { l2 * *wj } else { 0.0 };
                *wj -= 0.5 * (gj + decay);
            }
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separable_classes_are_learned() {
        // One input; class 0 below -1, class 2 above 1, class 1 between.
        let z: Vec<Vec<f64>> = (0..60).map(|i| vec![-3.0 + i as f64 * 0.1]).collect();
        let y: Vec<u8> = z
            .iter()
            .map(|x| {
                if x[0] < -1.0 {
                    0
                } else if x[0] > 1.0 {
                    2
                } else {
                    1
                }
            })
            .collect();
        let w = fit(&z, &y, 1e-3, 3000);
        let right = z
            .iter()
            .zip(&y)
            .filter(|(x, &l)| {
                let p = predict(&w, x);
                (0..3).max_by(|&a, &b| p[a].total_cmp(&p[b])) == Some(l as usize)
            })
            .count();
        assert!(right >= 55, "{right} of 60");
        let p = predict(&w, &[0.0]);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }
}
