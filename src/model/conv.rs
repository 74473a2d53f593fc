//! Inference convolution for the CPU: im2col as a candle custom op (parallel over rows),
//! then one matmul of the weights [Cout, Cin·k·k] by the columns [Cin·k·k, H·W]. The output
//! comes out in NCHW order with a wide matrix for gemm, where candle's own CPU conv2d
//! multiplies [H·W, K] by a thin [K, Cout] and transposes afterwards; measured ~2.5x
//! faster on this network's layers (BENCHMARKS.md). Other devices use candle's conv2d.

use candle_core::{CpuStorage, CustomOp1, Layout, Module, Result, Shape, Tensor};
use candle_nn::Conv2d;
use rayon::prelude::*;

/// im2col of a contiguous f32 [B, C, H, W] tensor into [B, C·k·k, OH·OW].
struct Im2Col {
    k: usize,
    stride: usize,
    pad: usize,
}

impl Im2Col {
    fn out_side(&self, side: usize) -> usize {
        (side + 2 * self.pad - self.k) / self.stride + 1
    }
}

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "im2col"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = layout.shape().dims4()?;
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("im2col needs a contiguous input");
        };
        let x = &storage.as_slice::<f32>()?[start..end];
        let (k, s, p) = (self.k, self.stride, self.pad);
        let (oh, ow) = (self.out_side(h), self.out_side(w));
        let rows = c * k * k;
        let mut cols = vec![0f32; b * rows * oh * ow];
        // One output row per (batch, channel, ky, kx): contiguous writes, independent.
        cols.par_chunks_mut(oh * ow)
            .enumerate()
            .for_each(|(row, out)| {
                let (bi, r) = (row / rows, row % rows);
                let (ci, ky, kx) = (r / (k * k), (r / k) % k, r % k);
                let plane = &x[(bi * c + ci) * h * w..][..h * w];
                // Output columns whose input column lies inside the image (the rest is
                // zero padding): ox * s + kx - p in 0..w.
                let lo = p.saturating_sub(kx).div_ceil(s);
                let hi = ((w + p).saturating_sub(kx + 1) / s + 1).min(ow);
                for oy in 0..oh {
                    let Some(iy) = (oy * s + ky).checked_sub(p).filter(|&iy| iy < h) else {
                        continue;
                    };
                    let src = &plane[iy * w..(iy + 1) * w];
                    let dst = &mut out[oy * ow..(oy + 1) * ow];
                    if lo >= hi {
                        continue;
                    }
                    let first = lo * s + kx - p;
                    if s == 1 {
                        dst[lo..hi].copy_from_slice(&src[first..first + (hi - lo)]);
                    } else {
                        for (d, v) in dst[lo..hi].iter_mut().zip(src[first..].iter().step_by(s)) {
                            *d = *v;
                        }
                    }
                }
            });
        Ok((CpuStorage::F32(cols), Shape::from((b, rows, oh * ow))))
    }
}

/// A square convolution with bias (batch norm already folded in), for inference.
pub struct InferenceConv {
    conv: Conv2d,
    /// [Cout, Cin·k·k].
    weight: Tensor,
    /// [Cout, 1].
    bias: Option<Tensor>,
    op: Im2Col,
}

impl InferenceConv {
    pub fn new(conv: Conv2d) -> Result<InferenceConv> {
        let (cout, cin, k, _) = conv.weight().dims4()?;
        let cfg = *conv.config();
        Ok(InferenceConv {
            weight: conv.weight().reshape((cout, cin * k * k))?,
            bias: conv.bias().map(|b| b.reshape((cout, 1))).transpose()?,
            op: Im2Col {
                k,
                stride: cfg.stride,
                pad: cfg.padding,
            },
            conv,
        })
    }
}

impl Module for InferenceConv {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if !x.device().is_cpu() || x.dtype() != candle_core::DType::F32 {
            return self.conv.forward(x);
        }
        let (b, _, h, w) = x.dims4()?;
        let x = x.contiguous()?;
        // One image at a time: its columns stay small enough to be cache-resident, and a
        // plain matmul beats a broadcast one here.
        let per_image = (0..b)
            .map(|i| {
                let cols = x.narrow(0, i, 1)?.apply_op1_no_bwd(&self.op)?;
                let y = self.weight.matmul(&cols.squeeze(0)?)?;
                match &self.bias {
                    Some(bias) => y.broadcast_add(bias),
                    None => Ok(y),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Tensor::stack(&per_image, 0)?.reshape((
            b,
            self.weight.dim(0)?,
            self.op.out_side(h),
            self.op.out_side(w),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use candle_nn::Conv2dConfig;

    #[test]
    fn equals_candle_conv2d() {
        let d = Device::Cpu;
        for (cin, cout, side, k, stride) in [(1, 4, 17, 7, 2), (3, 5, 9, 3, 1), (4, 6, 10, 3, 2)] {
            let x = Tensor::randn(0f32, 1.0, (2, cin, side, side), &d).unwrap();
            let w = Tensor::randn(0f32, 1.0, (cout, cin, k, k), &d).unwrap();
            let bias = Tensor::randn(0f32, 1.0, cout, &d).unwrap();
            let cfg = Conv2dConfig {
                padding: k / 2,
                stride,
                ..Default::default()
            };
            let conv = Conv2d::new(w, Some(bias), cfg);
            let want = conv.forward(&x).unwrap();
            let got = InferenceConv::new(conv).unwrap().forward(&x).unwrap();
            assert_eq!(got.dims(), want.dims());
            let diff = (got - want)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(diff < 1e-4, "{diff}");
        }
    }
}
