//! The X-ray network: a compact ResNet (a 7x7 stride-2 stem and a 2x2 max pool, since
//! candle has no backward pass for overlapping pools; four basic-block stages, 16-128
//! channels, about 0.7 M parameters) on a 1 x 256 x 256 grey radiograph, with two heads: 3-class logits
//! (normal, osteopenia, osteoporosis) and an estimated T-score. Weight names follow the
//! module tree (`stem.conv`, `layer2.block.conv1`, `class_head`, ...).

use super::conv::{train_forward, InferenceConv};
use super::plain::{to_tensors, PlainBlock, PlainConv, PlainLinear, PlainNet};
use candle_core::{Module, ModuleT, Result, Tensor};
use candle_nn::{
    batch_norm, conv2d_no_bias, linear, BatchNorm, Conv2d, Conv2dConfig, Linear, VarBuilder,
};

/// Input side length the network is built for.
pub const INPUT_SIZE: usize = 256;

fn conv(cin: usize, cout: usize, k: usize, stride: usize, vb: VarBuilder) -> Result<Conv2d> {
    let cfg = Conv2dConfig {
        padding: k / 2,
        stride,
        ..Default::default()
    };
    conv2d_no_bias(cin, cout, k, cfg, vb)
}

/// conv-bn-relu, conv-bn, plus the (projected) input, relu.
struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    shortcut: Option<(Conv2d, BatchNorm)>,
}

impl BasicBlock {
    fn new(cin: usize, cout: usize, stride: usize, vb: VarBuilder) -> Result<BasicBlock> {
        let shortcut = if stride != 1 || cin != cout {
            Some((
                conv(cin, cout, 1, stride, vb.pp("down_conv"))?,
                batch_norm(cout, 1e-5, vb.pp("down_bn"))?,
            ))
        } else {
            None
        };
        Ok(BasicBlock {
            conv1: conv(cin, cout, 3, stride, vb.pp("conv1"))?,
            bn1: batch_norm(cout, 1e-5, vb.pp("bn1"))?,
            conv2: conv(cout, cout, 3, 1, vb.pp("conv2"))?,
            bn2: batch_norm(cout, 1e-5, vb.pp("bn2"))?,
            shortcut,
        })
    }

    fn fused(&self) -> Result<FusedBlock> {
        Ok(FusedBlock {
            conv1: InferenceConv::new(self.conv1.absorb_bn(&self.bn1)?)?,
            conv2: InferenceConv::new(self.conv2.absorb_bn(&self.bn2)?)?,
            shortcut: match &self.shortcut {
                Some((c, b)) => Some(InferenceConv::new(c.absorb_bn(b)?)?),
                None => None,
            },
        })
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let y = self
            .bn1
            .forward_t(&train_forward(&self.conv1, x)?, train)?
            .relu()?;
        let y = self
            .bn2
            .forward_t(&train_forward(&self.conv2, &y)?, train)?;
        let skip = match &self.shortcut {
            Some((c, b)) => b.forward_t(&train_forward(c, x)?, train)?,
            None => x.clone(),
        };
        (y + skip)?.relu()
    }
}

/// A basic block for inference: batch norms folded into the convolutions' weights and
/// biases (exact in eval mode, and several tensor passes fewer per block).
struct FusedBlock {
    conv1: InferenceConv,
    conv2: InferenceConv,
    shortcut: Option<InferenceConv>,
}

impl FusedBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.conv1.forward(x)?.relu()?;
        let y = self.conv2.forward(&y)?;
        let skip = match &self.shortcut {
            Some(c) => c.forward(x)?,
            None => x.clone(),
        };
        (y + skip)?.relu()
    }
}

/// The network for inference only (see `FusedBlock`); built from a loaded `XrayNet`.
pub struct FusedNet {
    stem: InferenceConv,
    layers: Vec<FusedBlock>,
    class_head: Linear,
    t_head: Linear,
    /// The same weights as plain arrays, for the CPU (`plain`).
    plain: Option<PlainNet>,
}

impl FusedNet {
    /// `x`: [B, 1, 256, 256], normalised. On the CPU the plain pass runs (`plain`).
    pub fn forward(&self, x: &Tensor) -> Result<Output> {
        match &self.plain {
            Some(plain) if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 => {
                let (_, channels, side, width) = x.dims4()?;
                if channels != 1 || width != side {
                    candle_core::bail!("the network takes one-channel square images");
                }
                let values = x.flatten_all()?.to_vec1::<f32>()?;
                to_tensors(plain.forward(&values, side), x.device())
            }
            _ => self.forward_tensors(x),
        }
    }

    /// The same pass through candle's tensors (any device).
    pub fn forward_tensors(&self, x: &Tensor) -> Result<Output> {
        let mut y = self.stem.forward(x)?.relu()?.max_pool2d(2)?;
        for layer in &self.layers {
            y = layer.forward(&y)?;
        }
        let pooled = y.mean((2, 3))?;
        Ok(Output {
            logits: self.class_head.forward(&pooled)?,
            t_score: self.t_head.forward(&pooled)?.squeeze(1)?,
            features: pooled,
        })
    }
}

/// The whole network.
pub struct XrayNet {
    stem_conv: Conv2d,
    stem_bn: BatchNorm,
    layers: Vec<BasicBlock>,
    class_head: Linear,
    t_head: Linear,
}

/// Network outputs for a batch: logits [B, 3], T-scores [B], and the pooled features
/// [B, 128] both heads read (compared with the training set's to flag unfamiliar input).
pub struct Output {
    pub logits: Tensor,
    pub t_score: Tensor,
    pub features: Tensor,
}

/// Width of `Output::features`.
pub const FEATURES: usize = 128;

impl XrayNet {
    pub fn new(vb: VarBuilder) -> Result<XrayNet> {
        let widths = [16, 32, 64, 128];
        let mut layers = Vec::new();
        let mut cin = 16;
        for (i, &w) in widths.iter().enumerate() {
            let stride = if i == 0 { 1 } else { 2 };
            layers.push(BasicBlock::new(
                cin,
                w,
                stride,
                vb.pp(format!("layer{}", i + 1)),
            )?);
            cin = w;
        }
        Ok(XrayNet {
            stem_conv: conv(1, 16, 7, 2, vb.pp("stem").pp("conv"))?,
            stem_bn: batch_norm(16, 1e-5, vb.pp("stem").pp("bn"))?,
            layers,
            class_head: linear(128, 3, vb.pp("class_head"))?,
            t_head: linear(128, 1, vb.pp("t_head"))?,
        })
    }

    /// The inference form, batch norms folded in.
    pub fn fused(&self) -> Result<FusedNet> {
        let mut net = FusedNet {
            stem: InferenceConv::new(self.stem_conv.absorb_bn(&self.stem_bn)?)?,
            layers: self
                .layers
                .iter()
                .map(BasicBlock::fused)
                .collect::<Result<_>>()?,
            class_head: self.class_head.clone(),
            t_head: self.t_head.clone(),
            plain: None,
        };
        if self.stem_conv.weight().device().is_cpu() {
            net.plain = Some(PlainNet {
                stem: PlainConv::from_inference(&net.stem)?,
                blocks: net
                    .layers
                    .iter()
                    .map(|b| {
                        Ok(PlainBlock {
                            conv1: PlainConv::from_inference(&b.conv1)?,
                            conv2: PlainConv::from_inference(&b.conv2)?,
                            shortcut: b
                                .shortcut
                                .as_ref()
                                .map(PlainConv::from_inference)
                                .transpose()?,
                        })
                    })
                    .collect::<Result<_>>()?,
                class_head: PlainLinear::from_linear(&net.class_head)?,
                t_head: PlainLinear::from_linear(&net.t_head)?,
                plan: Default::default(),
            });
        }
        Ok(net)
    }

    /// `x`: [B, 1, 256, 256], normalised. `train` switches batch-norm statistics.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Output> {
        let mut y = self
            .stem_bn
            .forward_t(&train_forward(&self.stem_conv, x)?, train)?
            .relu()?
            .max_pool2d(2)?;
        for layer in &self.layers {
            y = layer.forward_t(&y, train)?;
        }
        let pooled = y.mean((2, 3))?;
        Ok(Output {
            logits: self.class_head.forward(&pooled)?,
            t_score: self.t_head.forward(&pooled)?.squeeze(1)?,
            features: pooled,
        })
    }
}
