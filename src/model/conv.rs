//! Convolution as im2col and gemm on the CPU. For training (`train_forward`) the columns
//! of the whole batch form one [Cin·k·k, B·H·W] matrix and im2col has a backward pass
//! (col2im), so the forward pass and both gradients are gemms; candle's conv2d backward
//! goes through a slow direct transposed convolution on the CPU. For inference,
//! `Im2Col::fill_row` is the geometry the plain pass (`plain`) fills its columns with;
//! `InferenceConv` holds a convolution with batch norm folded in, which candle runs on
//! other devices. Other devices train with candle's conv2d.

use candle_core::{CpuStorage, CustomOp1, Layout, Module, Result, Shape, Tensor};
use candle_nn::Conv2d;
use rayon::prelude::*;

/// The f32 values of a contiguous tensor's storage.
fn contiguous<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("im2col / col2im need a contiguous input");
    };
    Ok(&storage.as_slice::<f32>()?[start..end])
}

/// im2col geometry: a square kernel, its stride and padding.
#[derive(Debug, Clone, Copy)]
pub(super) struct Im2Col {
    pub k: usize,
    pub stride: usize,
    pad: usize,
}

impl Im2Col {
    pub fn out_side(&self, side: usize) -> usize {
        (side + 2 * self.pad - self.k) / self.stride + 1
    }

    /// One im2col row: what kernel offset (ky, kx) sees of `plane` (h x w) at every output
    /// position, into `out` (oh x ow), every value written (zero where the window lies in
    /// the padding), so `out` may hold anything before.
    pub fn fill_row(
        &self,
        plane: &[f32],
        (h, w): (usize, usize),
        (ky, kx): (usize, usize),
        (oh, ow): (usize, usize),
        out: &mut [f32],
    ) {
        let (s, p) = (self.stride, self.pad);
        // Output columns whose input column lies inside the image: ox * s + kx - p in 0..w.
        let lo = p.saturating_sub(kx).div_ceil(s).min(ow);
        let hi = ((w + p).saturating_sub(kx + 1) / s + 1).min(ow).max(lo);
        let first = (lo * s + kx).saturating_sub(p);
        for oy in 0..oh {
            let dst = &mut out[oy * ow..(oy + 1) * ow];
            let Some(iy) = (oy * s + ky).checked_sub(p).filter(|&iy| iy < h) else {
                dst.fill(0.0);
                continue;
            };
            dst[..lo].fill(0.0);
            dst[hi..].fill(0.0);
            if lo == hi {
                continue;
            }
            let src = &plane[iy * w..(iy + 1) * w];
            if s == 1 {
                dst[lo..hi].copy_from_slice(&src[first..first + (hi - lo)]);
            } else {
                for (d, v) in dst[lo..hi].iter_mut().zip(src[first..].iter().step_by(s)) {
                    *d = *v;
                }
            }
        }
    }
}

/// A square convolution with bias (batch norm already folded in), for inference: candle
/// runs it on other devices; the plain CPU pass copies its weights and `op` geometry.
pub struct InferenceConv {
    conv: Conv2d,
    op: Im2Col,
}

impl InferenceConv {
    /// The convolution (weights and bias folded).
    pub(super) fn conv(&self) -> &Conv2d {
        &self.conv
    }

    /// Its im2col geometry.
    pub(super) fn op(&self) -> Im2Col {
        self.op
    }

    pub fn new(conv: Conv2d) -> Result<InferenceConv> {
        let (_, _, k, _) = conv.weight().dims4()?;
        let cfg = *conv.config();
        Ok(InferenceConv {
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
        self.conv.forward(x)
    }
}

/// im2col of a contiguous f32 [B, C, H, W] into [C·k·k, B·OH·OW] (the batch side by side),
/// with a backward pass.
struct Im2ColBatch(Im2Col);

impl CustomOp1 for Im2ColBatch {
    fn name(&self) -> &'static str {
        "im2col-batch"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = layout.shape().dims4()?;
        let x = contiguous(storage, layout)?;
        let k = self.0.k;
        let (oh, ow) = (self.0.out_side(h), self.0.out_side(w));
        let l = oh * ow;
        let mut cols = vec![0f32; c * k * k * b * l];
        cols.par_chunks_mut(b * l).enumerate().for_each(|(r, out)| {
            let (ci, ky, kx) = (r / (k * k), (r / k) % k, r % k);
            for bi in 0..b {
                let plane = &x[(bi * c + ci) * h * w..][..h * w];
                let dst = &mut out[bi * l..(bi + 1) * l];
                self.0.fill_row(plane, (h, w), (ky, kx), (oh, ow), dst);
            }
        });
        Ok((CpuStorage::F32(cols), Shape::from((c * k * k, b * l))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (b, c, h, w) = arg.dims4()?;
        let op = Col2Im {
            conv: self.0,
            dims: (b, c, h, w),
        };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&op)?))
    }
}

/// The adjoint of `Im2ColBatch`: [C·k·k, B·OH·OW] back to [B, C, H, W], overlapping
/// windows summed.
struct Col2Im {
    conv: Im2Col,
    dims: (usize, usize, usize, usize),
}

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "col2im"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = contiguous(storage, layout)?;
        let (b, c, h, w) = self.dims;
        let Im2Col {
            k,
            stride: s,
            pad: p,
        } = self.conv;
        let (oh, ow) = (self.conv.out_side(h), self.conv.out_side(w));
        let l = oh * ow;
        let mut dx = vec![0f32; b * c * h * w];
        // One (image, channel) plane per task: no two tasks write the same pixel.
        dx.par_chunks_mut(h * w)
            .enumerate()
            .for_each(|(plane, out)| {
                let (bi, ci) = (plane / c, plane % c);
                for ky in 0..k {
                    for kx in 0..k {
                        let r = (ci * k + ky) * k + kx;
                        let src = &g[r * b * l + bi * l..][..l];
                        for oy in 0..oh {
                            let Some(iy) = (oy * s + ky).checked_sub(p).filter(|&iy| iy < h) else {
                                continue;
                            };
                            for ox in 0..ow {
                                if let Some(ix) = (ox * s + kx).checked_sub(p).filter(|&ix| ix < w)
                                {
                                    out[iy * w + ix] += src[oy * ow + ox];
                                }
                            }
                        }
                    }
                }
            });
        Ok((CpuStorage::F32(dx), Shape::from((b, c, h, w))))
    }
}

/// A convolution with gradients, for training: im2col + one matmul on the CPU (f32),
/// candle's conv2d elsewhere.
pub fn train_forward(conv: &Conv2d, x: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() || x.dtype() != candle_core::DType::F32 {
        return conv.forward(x);
    }
    let (cout, cin, k, _) = conv.weight().dims4()?;
    let cfg = conv.config();
    if cfg.dilation != 1 || cfg.groups != 1 {
        return conv.forward(x);
    }
    let op = Im2Col {
        k,
        stride: cfg.stride,
        pad: cfg.padding,
    };
    let (b, _, h, w) = x.dims4()?;
    let (oh, ow) = (op.out_side(h), op.out_side(w));
    let cols = x.contiguous()?.apply_op1(Im2ColBatch(op))?;
    let y = conv.weight().reshape((cout, cin * k * k))?.matmul(&cols)?;
    let y = y
        .reshape((cout, b, oh, ow))?
        .transpose(0, 1)?
        .contiguous()?;
    match conv.bias() {
        Some(bias) => y.broadcast_add(&bias.reshape((1, cout, 1, 1))?),
        None => Ok(y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use candle_nn::Conv2dConfig;

    #[test]
    fn training_convolution_matches_candle_values_and_gradients() {
        let d = Device::Cpu;
        for (cin, cout, side, k, stride) in [(1, 4, 17, 7, 2), (3, 5, 9, 3, 1), (4, 6, 10, 1, 2)] {
            let x = candle_core::Var::from_tensor(
                &Tensor::randn(0f32, 1.0, (3, cin, side, side), &d).unwrap(),
            )
            .unwrap();
            let w = candle_core::Var::from_tensor(
                &Tensor::randn(0f32, 1.0, (cout, cin, k, k), &d).unwrap(),
            )
            .unwrap();
            let cfg = Conv2dConfig {
                padding: k / 2,
                stride,
                ..Default::default()
            };
            let conv = Conv2d::new(w.as_tensor().clone(), None, cfg);
            // A loss that weighs every output differently.
            let weigh = |y: &Tensor| {
                let n = y.elem_count();
                let ramp = Tensor::arange(0f32, n as f32, &d)
                    .unwrap()
                    .reshape(y.shape())
                    .unwrap();
                (y * ramp.sin().unwrap()).unwrap().sum_all().unwrap()
            };
            let want = conv.forward(x.as_tensor()).unwrap();
            let got = train_forward(&conv, x.as_tensor()).unwrap();
            let max_diff = |a: &Tensor, b: &Tensor| {
                (a - b)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
            };
            assert!(max_diff(&got, &want) < 1e-4);
            let gw = weigh(&want).backward().unwrap();
            let gg = weigh(&got).backward().unwrap();
            for v in [&x, &w] {
                let (a, b) = (
                    gw.get(v.as_tensor()).unwrap(),
                    gg.get(v.as_tensor()).unwrap(),
                );
                assert!(
                    max_diff(a, b) < 1e-3,
                    "gradient differs: {}",
                    max_diff(a, b)
                );
            }
        }
    }
}
