//! The X-ray network's CPU inference pass without tensors: the folded weights as plain
//! arrays, every convolution one gemm call over im2col columns, its bias (and, for a
//! block's second convolution, the residual) written into the output first so that the
//! gemm accumulates onto them, and ReLU in place. Why: each candle op allocates and fills
//! a fresh output, and its element-wise ops run on a spinning thread pool that competes
//! with gemm's on two cores (BENCHMARKS.md, eighth session). One rayon pool does all the
//! work here, and the buffers live for the whole pass.
//!
//! Activations are kept channel-major with the batch inside, [C][B][H·W], so that one
//! gemm covers the whole batch and no transpose is needed between layers. A batch of at
//! least one image per core is split between the cores, each running its share through
//! every layer alone, or spread over the cores layer by layer, whichever the machine runs
//! faster (`plan`); a smaller one spreads each layer over the cores.

use candle_core::{Result, Tensor};
use rayon::prelude::*;

use super::conv::{Im2Col, InferenceConv};
use super::plan::{BatchPlan, Way};

/// One convolution, batch norm folded in.
pub struct PlainConv {
    cout: usize,
    cin: usize,
    op: Im2Col,
    /// [cout][cin·k·k], row-major.
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl PlainConv {
    pub fn from_inference(conv: &InferenceConv) -> Result<PlainConv> {
        let (cout, cin, _, _) = conv.conv().weight().dims4()?;
        let weight = conv.conv().weight().flatten_all()?.to_vec1::<f32>()?;
        let bias = match conv.conv().bias() {
            Some(b) => b.to_vec1::<f32>()?,
            None => vec![0.0; cout],
        };
        Ok(PlainConv {
            cout,
            cin,
            op: conv.op(),
            weight,
            bias,
        })
    }

    fn out_side(&self, side: usize) -> usize {
        self.op.out_side(side)
    }

    /// `x` [cin][b][h·w] → `out` [cout][b][oh·ow]. `out` holds what the product is added to
    /// when `accumulate` (a residual); otherwise it is overwritten. The bias is added.
    fn forward(
        &self,
        x: &[f32],
        (b, h, w): (usize, usize, usize),
        (cols, out): (&mut Vec<f32>, &mut Vec<f32>),
        accumulate: bool,
        par: bool,
    ) {
        // The gemm below reads by these dimensions: hold the input to them.
        assert_eq!(x.len(), self.cin * b * h * w, "input size");
        let k = self.op.k;
        let (oh, ow) = (self.out_side(h), self.out_side(w));
        let (l, rows) = (oh * ow, self.cin * k * k);
        let n = b * l;
        // A 1x1 stride-1 convolution reads its input as it is.
        let rhs: &[f32] = if k == 1 && self.op.stride == 1 {
            x
        } else {
            cols.resize(rows * n, 0.0);
            each_chunk(par, cols, n, |r, dst| {
                let (ci, ky, kx) = (r / (k * k), (r / k) % k, r % k);
                for bi in 0..b {
                    let plane = &x[(ci * b + bi) * h * w..][..h * w];
                    self.op
                        .fill_row(plane, (h, w), (ky, kx), (oh, ow), &mut dst[bi * l..][..l]);
                }
            });
            cols
        };
        out.resize(self.cout * n, 0.0);
        each_chunk(par, out, n, |c, row| {
            let bias = self.bias[c];
            if accumulate {
                row.iter_mut().for_each(|v| *v += bias);
            } else {
                row.fill(bias);
            }
        });
        // SAFETY: the three matrices are row-major with the strides given, and their
        // buffers hold m·k, k·n and m·n values.
        unsafe {
            gemm::gemm(
                self.cout,
                n,
                rows,
                out.as_mut_ptr(),
                1,
                n as isize,
                true,
                self.weight.as_ptr(),
                1,
                rows as isize,
                rhs.as_ptr(),
                1,
                n as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                if par {
                    gemm::Parallelism::Rayon(rayon::current_num_threads())
                } else {
                    gemm::Parallelism::None
                },
            );
        }
    }
}

fn relu(x: &mut [f32], par: bool) {
    each_chunk(par, x, 1 << 14, |_, c| {
        c.iter_mut().for_each(|v| *v = v.max(0.0))
    });
}

/// `f(i, chunk)` for each `n`-value chunk of `x`: across the pool when `par`, else here.
fn each_chunk(par: bool, x: &mut [f32], n: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    if par {
        x.par_chunks_mut(n).enumerate().for_each(|(i, c)| f(i, c));
    } else {
        x.chunks_mut(n).enumerate().for_each(|(i, c)| f(i, c));
    }
}

/// A basic block: conv-ReLU, conv + shortcut, ReLU.
pub struct PlainBlock {
    pub conv1: PlainConv,
    pub conv2: PlainConv,
    pub shortcut: Option<PlainConv>,
}

/// A fully connected head: [outputs][inputs] weights and a bias.
pub struct PlainLinear {
    weight: Vec<f32>,
    bias: Vec<f32>,
    inputs: usize,
}

impl PlainLinear {
    pub fn from_linear(linear: &candle_nn::Linear) -> Result<PlainLinear> {
        let (_, inputs) = linear.weight().dims2()?;
        Ok(PlainLinear {
            weight: linear.weight().flatten_all()?.to_vec1::<f32>()?,
            bias: match linear.bias() {
                Some(b) => b.to_vec1::<f32>()?,
                None => vec![0.0; linear.weight().dim(0)?],
            },
            inputs,
        })
    }

    fn forward(&self, x: &[f32]) -> Vec<f32> {
        self.weight
            .chunks(self.inputs)
            .zip(&self.bias)
            .map(|(w, b)| w.iter().zip(x).map(|(a, v)| a * v).sum::<f32>() + b)
            .collect()
    }
}

/// The whole network for the CPU.
pub struct PlainNet {
    pub stem: PlainConv,
    pub blocks: Vec<PlainBlock>,
    pub class_head: PlainLinear,
    pub t_head: PlainLinear,
    /// How batches of at least one image per core run, learnt from the first ones.
    pub plan: BatchPlan,
}

/// Per image: logits, T-score and pooled features.
pub struct PlainOutput {
    pub logits: Vec<Vec<f32>>,
    pub t_score: Vec<f32>,
    pub features: Vec<Vec<f32>>,
}

impl PlainNet {
    /// `images`: `b` images of `side`² normalised values each.
    pub fn forward(&self, images: &[f32], side: usize) -> PlainOutput {
        // The whole pass runs on a rayon worker: a caller outside the pool would block at
        // every parallel step while the pool's idle workers spin for the next, and the
        // serial steps between would wait for a core.
        rayon::join(|| self.forward_in_pool(images, side), || ()).0
    }

    fn forward_in_pool(&self, images: &[f32], side: usize) -> PlainOutput {
        let b = images.len() / (side * side).max(1);
        let threads = rayon::current_num_threads();
        let spread = |chunk: usize| {
            let mut buffers = Buffers::default();
            images
                .chunks(chunk * side * side)
                .flat_map(|part| {
                    let n = part.len() / (side * side);
                    self.features(part, n, side, &mut buffers, true)
                })
                .collect::<Vec<_>>()
        };
        let features = if threads > 1 && b >= threads {
            self.plan.run(b, |way| match way {
                // An image or more for every core: each core takes whole chunks, layer
                // after layer on its own, with no hand-off between the small steps of a
                // layer.
                Way::Shares => {
                    let per_core = b.div_ceil(threads).min(CHUNK_IMAGES);
                    images
                        .par_chunks(per_core * side * side)
                        .with_max_len(1)
                        .map(|part| {
                            let n = part.len() / (side * side);
                            self.features(part, n, side, &mut Buffers::default(), false)
                        })
                        .collect::<Vec<_>>()
                        .concat()
                }
                Way::Spread => spread(SPREAD_IMAGES),
            })
        } else {
            spread(CHUNK_IMAGES)
        };
        PlainOutput {
            logits: features
                .iter()
                .map(|f| self.class_head.forward(f))
                .collect(),
            t_score: features.iter().map(|f| self.t_head.forward(f)[0]).collect(),
            features,
        }
    }

    /// The pooled features of `b` images.
    fn features(
        &self,
        images: &[f32],
        b: usize,
        side: usize,
        buf: &mut Buffers,
        par: bool,
    ) -> Vec<Vec<f32>> {
        let Buffers { cols, a, t, skip } = buf;
        // [1][b][side²] is already channel-major.
        self.stem
            .forward(images, (b, side, side), (cols, t), false, par);
        relu(t, par);
        let mut s = self.stem.out_side(side);
        max_pool2(t, self.stem.cout * b, s, a, par);
        s /= 2;
        for block in &self.blocks {
            let dims = (b, s, s);
            block.conv1.forward(a, dims, (cols, t), false, par);
            relu(t, par);
            match &block.shortcut {
                Some(c) => c.forward(a, dims, (cols, skip), false, par),
                None => {
                    skip.clear();
                    skip.extend_from_slice(a);
                }
            }
            let s2 = block.conv1.out_side(s);
            block.conv2.forward(t, (b, s2, s2), (cols, skip), true, par);
            relu(skip, par);
            std::mem::swap(a, skip);
            s = s2;
        }
        let c = self.blocks.last().map_or(self.stem.cout, |b| b.conv2.cout);
        let l = s * s;
        (0..b)
            .map(|bi| {
                (0..c)
                    .map(|ci| a[(ci * b + bi) * l..][..l].iter().sum::<f32>() / l as f32)
                    .collect()
            })
            .collect()
    }
}

/// Images per pass through the layers: enough to widen the small late gemms (8x8 planes at
/// the last stage), few enough that the early layers' columns stay in cache (measured:
/// 1.8 ms/image at batch 8 with 4, 2.2 with 8, 2.0 with 1 or 2).
const CHUNK_IMAGES: usize = 4;
/// Images per pass when a batch is spread over the cores (`Way::Spread`): on the AMD
/// machine, batch 8 ran 2.0-2.1 ms/image two at a time, 2.2-2.5 one at a time.
const SPREAD_IMAGES: usize = 2;

/// The pass's working arrays, kept from layer to layer and image to image.
#[derive(Default)]
struct Buffers {
    cols: Vec<f32>,
    a: Vec<f32>,
    t: Vec<f32>,
    skip: Vec<f32>,
}

/// 2x2 max pool, stride 2, of `planes` square planes of side `s`.
fn max_pool2(x: &[f32], planes: usize, s: usize, out: &mut Vec<f32>, par: bool) {
    let o = s / 2;
    out.resize(planes * o * o, 0.0);
    each_chunk(par, out, o * o, |p, dst| {
        let src = &x[p * s * s..][..s * s];
        for y in 0..o {
            let (r0, r1) = (&src[2 * y * s..][..s], &src[(2 * y + 1) * s..][..s]);
            for (xo, d) in dst[y * o..][..o].iter_mut().enumerate() {
                *d = r0[2 * xo]
                    .max(r0[2 * xo + 1])
                    .max(r1[2 * xo])
                    .max(r1[2 * xo + 1]);
            }
        }
    });
}

/// The candle form's output from the plain one, for callers that want tensors.
pub fn to_tensors(out: PlainOutput, device: &candle_core::Device) -> Result<super::net::Output> {
    let b = out.t_score.len();
    let logits = Tensor::from_vec(out.logits.concat(), (b, 3), device)?;
    let width = out.features.first().map_or(0, Vec::len);
    let features = Tensor::from_vec(out.features.concat(), (b, width), device)?;
    Ok(super::net::Output {
        logits,
        t_score: Tensor::from_vec(out.t_score, b, device)?,
        features,
    })
}

#[cfg(test)]
mod tests {
    use super::super::net::{XrayNet, INPUT_SIZE};
    use candle_core::{DType, Device, Tensor};
    use candle_nn::{VarBuilder, VarMap};

    /// The plain pass equals the network through candle's own layers (batch norm not
    /// folded) within 1e-4, at batch 1, 3 and 6 (the plan's first two tries: batch 3 as
    /// each core's share, batch 6 spread over the cores two images at a time, passes
    /// sharing the buffers), with batch-norm statistics far from the identity so that
    /// folding is exercised.
    #[test]
    fn the_plain_pass_equals_candles_layers() {
        let device = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
        let net = XrayNet::new(vb).unwrap();
        for (name, var) in varmap.data().lock().unwrap().iter() {
            let shape = var.shape().clone();
            let value = if name.ends_with("running_var") {
                Tensor::rand(0.5f32, 1.5, shape, &device)
            } else if name.contains("bn") && !name.contains("conv") {
                Tensor::rand(-0.5f32, 0.5, shape, &device).and_then(|t| {
                    if name.ends_with("weight") {
                        t + 1.0
                    } else {
                        Ok(t)
                    }
                })
            } else {
                continue;
            };
            var.set(&value.unwrap()).unwrap();
        }
        let fused = net.fused().unwrap();
        for b in [1usize, 3, 6] {
            let x = Tensor::randn(0f32, 1.0, (b, 1, INPUT_SIZE, INPUT_SIZE), &device).unwrap();
            let want = net.forward_t(&x, false).unwrap();
            let got = fused.forward(&x).unwrap();
            let tensors = fused.forward_tensors(&x).unwrap();
            for (g, w) in [
                (&got.logits, &want.logits),
                (&got.t_score, &want.t_score),
                (&got.features, &want.features),
                (&tensors.logits, &want.logits),
            ] {
                assert_eq!(g.dims(), w.dims());
                let diff = (g - w).unwrap().abs().unwrap().flatten_all().unwrap();
                let max = diff.max(0).unwrap().to_scalar::<f32>().unwrap();
                assert!(max < 1e-4, "batch {b}: max difference {max}");
            }
            let spread = want.logits.abs().unwrap().flatten_all().unwrap();
            assert!(
                spread.max(0).unwrap().to_scalar::<f32>().unwrap() > 1e-3,
                "a non-trivial output"
            );
        }
    }
}
