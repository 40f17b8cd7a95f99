//! The runtime builder: a checked net, known only as text at run time, lowered to a
//! Burn module. It builds one layer module per stateful row of the checked table and
//! runs `forward` by walking [`CheckedNet::lower`] with tensors, so shape logic stays
//! in the checker and the traversal stays in `nas-dsl`.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AvgPool2d, AvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d,
};
use burn::tensor::activation;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use nas_dsl::ast::{Activation, Layer, PoolKind};
use nas_dsl::{CheckedNet, LayerInfo, Lower, Op, Shape};
use std::collections::HashMap;
use std::sync::Arc;

pub mod batch_norm;

/// Why a runtime module could not be built, run or loaded.
#[derive(Clone, Debug, thiserror::Error, PartialEq)]
pub enum RuntimeError {
    /// The input tensor does not match the net's declared input.
    #[error("`{net}` expects input [batch, {expected}] but received {found:?}")]
    InputShape {
        /// The net's name.
        net: String,
        /// The declared per-sample shape, e.g. `3, 32, 32`.
        expected: String,
        /// The dimensions received, batch included.
        found: Vec<usize>,
    },
    /// A layer received a value of the wrong rank (a checker/runtime disagreement).
    #[error("`{layer}` received a {found} value but needs a {needed} one")]
    Rank {
        /// The layer's name.
        layer: String,
        /// What it needs: "feature-map" or "flat".
        needed: &'static str,
        /// What reached it.
        found: &'static str,
    },
    /// A stateful layer has no module (a checker/runtime disagreement).
    #[error("no module was built for layer `{0}`")]
    MissingModule(String),
    /// A net with a zero batch was run.
    #[error("cannot run `{0}` on an empty batch")]
    EmptyBatch(String),
    /// Loading parameters from another module failed.
    #[error("cannot load parameters: {0}")]
    Load(String),
}

/// The module of one stateful layer, in source order.
#[derive(Module, Debug)]
pub enum LayerModule<B: Backend> {
    /// `conv`
    Conv(Conv2d<B>),
    /// `linear`
    Linear(Linear<B>),
    /// `bn`
    Bn(BatchNorm<B>),
    /// `maxpool`
    MaxPool(MaxPool2d),
    /// `avgpool`
    AvgPool(AvgPool2d),
    /// `dropout`
    Dropout(Dropout),
}

/// What the runtime module needs besides its layers: the checked net and which
/// layer module belongs to which statement.
#[derive(Debug)]
pub struct Plan {
    net: CheckedNet,
    modules: HashMap<String, usize>,
}

/// A checked net as a Burn module, with the same parameters, in the same order, as
/// the `network!` macro's module for the same text.
#[derive(Module, Debug)]
pub struct RuntimeNet<B: Backend> {
    /// One module per stateful layer (conv, linear, bn, pools, dropout), in source order.
    pub layers: Vec<LayerModule<B>>,
    #[module(skip)]
    plan: Arc<Plan>,
}

/// A value flowing through the runtime forward: a feature map or a flat batch.
#[derive(Clone, Debug)]
pub enum Value<B: Backend> {
    /// `[batch, C, H, W]`
    Map(Tensor<B, 4>),
    /// `[batch, F]`
    Flat(Tensor<B, 2>),
}

impl<B: Backend> Value<B> {
    fn kind(&self) -> &'static str {
        match self {
            Value::Map(_) => "feature-map",
            Value::Flat(_) => "flat",
        }
    }
}

fn u(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// The module for one layer, configured exactly as `nas_dsl::codegen` configures it.
fn build_layer<B: Backend>(
    row: &LayerInfo,
    layer: &Layer,
    device: &B::Device,
) -> Option<LayerModule<B>> {
    Some(match layer {
        Layer::Conv(c) => {
            let p = u(c.pad.value);
            let k = u(c.k.value);
            LayerModule::Conv(
                Conv2dConfig::new([u(c.in_ch.value), u(c.out_ch.value)], [k, k])
                    .with_stride([u(c.stride.value); 2])
                    .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                    .with_groups(u(c.groups.value))
                    .with_dilation([u(c.dilation.value); 2])
                    .with_bias(c.bias.value)
                    .init(device),
            )
        }
        Layer::Linear(l) => LayerModule::Linear(
            LinearConfig::new(u(l.in_f.value), u(l.out_f.value))
                .with_bias(l.bias.value)
                .init(device),
        ),
        Layer::Bn => {
            LayerModule::Bn(BatchNormConfig::new(u(row.input_shape().channels())).init(device))
        }
        Layer::Pool(p) => {
            let (k, s, pad) = (u(p.k.value), u(p.stride.value), u(p.pad.value));
            let padding = PaddingConfig2d::Explicit(pad, pad, pad, pad);
            match p.kind {
                PoolKind::Max => LayerModule::MaxPool(
                    MaxPool2dConfig::new([k, k])
                        .with_strides([s, s])
                        .with_padding(padding)
                        .init(),
                ),
                PoolKind::Avg => LayerModule::AvgPool(
                    AvgPool2dConfig::new([k, k])
                        .with_strides([s, s])
                        .with_padding(padding)
                        .init(),
                ),
            }
        }
        Layer::Dropout(p) => LayerModule::Dropout(DropoutConfig::new(p.value).init()),
        Layer::Act(_) | Layer::Gap | Layer::Flatten => return None,
    })
}

impl<B: Backend> RuntimeNet<B> {
    /// Builds the module of a checked net with freshly initialised weights (seed the
    /// backend first with `B::seed` for reproducible weights).
    pub fn new(net: &CheckedNet, device: &B::Device) -> Self {
        let mut layers = Vec::new();
        let mut modules = HashMap::new();
        for row in net.layers() {
            if let Op::Layer(layer) = &row.op
                && let Some(m) = build_layer(row, layer, device)
            {
                modules.insert(row.name.clone(), layers.len());
                layers.push(m);
            }
        }
        RuntimeNet {
            layers,
            plan: Arc::new(Plan {
                net: net.clone(),
                modules,
            }),
        }
    }

    /// The checked net this module runs.
    pub fn net(&self) -> &CheckedNet {
        &self.plan.net
    }

    /// Applies the net to images: `[batch, C, H, W]` to `[batch, classes]` logits.
    pub fn forward(&self, images: Tensor<B, 4>) -> Result<Tensor<B, 2>, RuntimeError> {
        let dims = images.dims();
        match self.plan.net.input() {
            Shape::Map { c, h, w } if dims[1..] == [u(c), u(h), u(w)] => {}
            _ => return Err(self.input_error(dims.to_vec())),
        }
        self.forward_value(Value::Map(images))
    }

    /// Applies a net with a flat input: `[batch, F]` to `[batch, classes]` logits.
    pub fn forward_flat(&self, x: Tensor<B, 2>) -> Result<Tensor<B, 2>, RuntimeError> {
        let dims = x.dims();
        match self.plan.net.input() {
            Shape::Flat(f) if dims[1] == u(f) => {}
            _ => return Err(self.input_error(dims.to_vec())),
        }
        self.forward_value(Value::Flat(x))
    }

    fn input_error(&self, found: Vec<usize>) -> RuntimeError {
        let expected = self
            .plan
            .net
            .input()
            .dims()
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        RuntimeError::InputShape {
            net: self.plan.net.name().to_string(),
            expected,
            found,
        }
    }

    fn forward_value(&self, x: Value<B>) -> Result<Tensor<B, 2>, RuntimeError> {
        let batch = match &x {
            Value::Map(t) => t.dims()[0],
            Value::Flat(t) => t.dims()[0],
        };
        if batch == 0 {
            return Err(RuntimeError::EmptyBatch(self.plan.net.name().to_string()));
        }
        let mut run = Run { net: self };
        match self.plan.net.lower(&mut run, Ok(x))? {
            Value::Flat(t) => Ok(t),
            Value::Map(_) => Err(RuntimeError::Rank {
                layer: "output".into(),
                needed: "flat",
                found: "feature-map",
            }),
        }
    }

    fn module(&self, name: &str) -> Result<&LayerModule<B>, RuntimeError> {
        self.plan
            .modules
            .get(name)
            .and_then(|&i| self.layers.get(i))
            .ok_or_else(|| RuntimeError::MissingModule(name.to_string()))
    }

    /// Replaces every parameter with the corresponding one of `other`, a module of
    /// the same architecture (for instance the `network!` module of the same text):
    /// parameters are matched in visiting order, which for both is source order, and
    /// every shape must agree.
    pub fn load_params_from<M: Module<B>>(self, other: &M) -> Result<Self, RuntimeError> {
        let mut collect = Collect::default();
        other.visit(&mut collect);
        let mut own = Collect::default();
        self.visit(&mut own);
        if collect.params.len() != own.params.len() {
            return Err(RuntimeError::Load(format!(
                "the source has {} parameter tensors, this module {}",
                collect.params.len(),
                own.params.len()
            )));
        }
        for (i, (a, b)) in collect.params.iter().zip(&own.params).enumerate() {
            if a.shape != b.shape {
                return Err(RuntimeError::Load(format!(
                    "parameter {i} has shape {:?} in the source but {:?} here",
                    a.shape, b.shape
                )));
            }
        }
        let mut assign = Assign {
            params: collect.params.into_iter(),
        };
        Ok(self.map(&mut assign))
    }
}

/// A parameter's data, as collected from a module.
struct Collected {
    shape: Vec<usize>,
    data: TensorData,
}

#[derive(Default)]
struct Collect {
    params: Vec<Collected>,
}

impl<B: Backend> ModuleVisitor<B> for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let t = param.val();
        self.params.push(Collected {
            shape: t.dims().to_vec(),
            data: t.into_data(),
        });
    }
}

struct Assign {
    params: std::vec::IntoIter<Collected>,
}

impl<B: Backend> ModuleMapper<B> for Assign {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        match self.params.next() {
            Some(c) => {
                let (id, tensor, mapper) = param.consume();
                let device = tensor.device();
                let value = Tensor::<B, D>::from_data(c.data, &device);
                let value = if tensor.is_require_grad() {
                    value.require_grad()
                } else {
                    value
                };
                Param::from_mapped_value(id, value, mapper)
            }
            None => param,
        }
    }
}

/// The tensor lowering: each statement applied to the value reaching it.
struct Run<'a, B: Backend> {
    net: &'a RuntimeNet<B>,
}

type Flow<B> = Result<Value<B>, RuntimeError>;

fn rank_error<B: Backend>(row: &LayerInfo, needed: &'static str, v: &Value<B>) -> RuntimeError {
    RuntimeError::Rank {
        layer: row.name.clone(),
        needed,
        found: v.kind(),
    }
}

impl<B: Backend> Run<'_, B> {
    fn apply(&self, row: &LayerInfo, layer: &Layer, x: Value<B>) -> Flow<B> {
        let act = |a: Activation, v: Value<B>| -> Value<B> {
            match v {
                Value::Map(t) => Value::Map(activate(a, t)),
                Value::Flat(t) => Value::Flat(activate(a, t)),
            }
        };
        Ok(match (layer, x) {
            (Layer::Act(a), v) => act(*a, v),
            (Layer::Gap, Value::Map(t)) => Value::Flat(t.mean_dim(3).mean_dim(2).flatten(1, 3)),
            (Layer::Flatten, Value::Map(t)) => Value::Flat(t.flatten(1, 3)),
            (Layer::Gap | Layer::Flatten, v) => return Err(rank_error(row, "feature-map", &v)),
            (_, v) => match (self.net.module(&row.name)?, v) {
                (LayerModule::Conv(m), Value::Map(t)) => Value::Map(m.forward(t)),
                (LayerModule::Linear(m), Value::Flat(t)) => Value::Flat(m.forward(t)),
                (LayerModule::Bn(m), Value::Map(t)) => Value::Map(batch_norm::forward(m, t)),
                (LayerModule::Bn(m), Value::Flat(t)) => Value::Flat(batch_norm::forward(m, t)),
                (LayerModule::MaxPool(m), Value::Map(t)) => Value::Map(m.forward(t)),
                (LayerModule::AvgPool(m), Value::Map(t)) => Value::Map(m.forward(t)),
                (LayerModule::Dropout(m), Value::Map(t)) => Value::Map(m.forward(t)),
                (LayerModule::Dropout(m), Value::Flat(t)) => Value::Flat(m.forward(t)),
                (LayerModule::Linear(_), v) => return Err(rank_error(row, "flat", &v)),
                (_, v) => return Err(rank_error(row, "feature-map", &v)),
            },
        })
    }
}

fn activate<B: Backend, const D: usize>(a: Activation, t: Tensor<B, D>) -> Tensor<B, D> {
    match a {
        Activation::Relu => activation::relu(t),
        Activation::Gelu => activation::gelu(t),
        Activation::Silu => activation::silu(t),
        Activation::Sigmoid => activation::sigmoid(t),
        Activation::Tanh => activation::tanh(t),
    }
}

impl<B: Backend> Lower for Run<'_, B> {
    type Value = Flow<B>;

    fn layer(&mut self, row: &LayerInfo, layer: &Layer, x: Flow<B>) -> Flow<B> {
        self.apply(row, layer, x?)
    }

    fn fork(&mut self, x: &Flow<B>) -> Flow<B> {
        x.clone()
    }

    fn add(&mut self, row: &LayerInfo, body: Flow<B>, shortcut: Flow<B>) -> Flow<B> {
        match (body?, shortcut?) {
            (Value::Map(a), Value::Map(b)) => Ok(Value::Map(a + b)),
            (Value::Flat(a), Value::Flat(b)) => Ok(Value::Flat(a + b)),
            (a, b) => Err(RuntimeError::Rank {
                layer: row.name.clone(),
                needed: a.kind(),
                found: b.kind(),
            }),
        }
    }

    fn concat(&mut self, row: &LayerInfo, branches: Vec<Flow<B>>) -> Flow<B> {
        let mut maps = Vec::with_capacity(branches.len());
        for b in branches {
            match b? {
                Value::Map(t) => maps.push(t),
                v => return Err(rank_error(row, "feature-map", &v)),
            }
        }
        if maps.is_empty() {
            return Err(RuntimeError::MissingModule(row.name.clone()));
        }
        Ok(Value::Map(Tensor::cat(maps, 1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::Distribution;

    fn checked(src: &str) -> CheckedNet {
        nas_dsl::check_str(src).unwrap().remove(0)
    }

    const ALL: &str = "net AllLayers(input = [3, 16, 16], classes = 7) {
        a: conv(3 -> 8, k = 3, pad = 1);
        bn; relu;
        conv(8 -> 16, k = 3, stride = 2, pad = 2, dilation = 2, bias = false);
        gelu;
        conv(16 -> 16, k = 3, pad = 1, groups = 16);
        silu;
        maxpool(k = 3, stride = 1, pad = 1);
        avgpool(k = 2);
        sigmoid;
        tanh;
        residual { conv(16 -> 16, k = 1); bn; }
        concat {
            branch { }
            branch { conv(16 -> 8, k = 1); }
        }
        flatten;
        dropout(p = 0.5);
        linear(384 -> 7);
    }";

    #[test]
    fn every_layer_runs_with_checked_shapes_and_params() {
        let net = checked(ALL);
        let device = Default::default();
        let m = RuntimeNet::<Flex>::new(&net, &device);
        assert_eq!(m.num_params() as u64, net.burn_params());
        let x = Tensor::<Flex, 4>::random([2, 3, 16, 16], Distribution::Default, &device);
        let y = m.forward(x).unwrap();
        assert_eq!(y.dims(), [2, 7]);
    }

    #[test]
    fn flat_nets_run() {
        let net = checked(
            "net Mlp(input = [12], classes = 3) { linear(12 -> 8); bn; relu; dropout(p = 0.1); linear(8 -> 3); }",
        );
        let device = Default::default();
        let m = RuntimeNet::<Flex>::new(&net, &device);
        assert_eq!(m.num_params() as u64, net.burn_params());
        let x = Tensor::<Flex, 2>::random([4, 12], Distribution::Default, &device);
        assert_eq!(m.forward_flat(x).unwrap().dims(), [4, 3]);
    }

    #[test]
    fn wrong_input_is_an_error_naming_both_shapes() {
        let net = checked(ALL);
        let device = Default::default();
        let m = RuntimeNet::<Flex>::new(&net, &device);
        let x = Tensor::<Flex, 4>::zeros([2, 3, 32, 32], &device);
        let e = m.forward(x).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`AllLayers` expects input [batch, 3, 16, 16] but received [2, 3, 32, 32]"
        );
        let flat = Tensor::<Flex, 2>::zeros([2, 768], &device);
        assert!(matches!(
            m.forward_flat(flat),
            Err(RuntimeError::InputShape { .. })
        ));
        let empty = Tensor::<Flex, 4>::zeros([0, 3, 16, 16], &device);
        assert_eq!(
            m.forward(empty).unwrap_err(),
            RuntimeError::EmptyBatch("AllLayers".into())
        );
    }

    #[test]
    fn loading_params_reproduces_outputs_and_rejects_other_shapes() {
        let net = checked(ALL);
        let device = Default::default();
        Flex::seed(&device, 1);
        let a = RuntimeNet::<Flex>::new(&net, &device);
        let b = RuntimeNet::<Flex>::new(&net, &device);
        let x = Tensor::<Flex, 4>::random([2, 3, 16, 16], Distribution::Default, &device);
        let ya = a.forward(x.clone()).unwrap();
        let yb = b.forward(x.clone()).unwrap();
        assert!(ya.clone().sub(yb).abs().max().into_scalar() > 1e-4);
        let b = b.load_params_from(&a).unwrap();
        let yb = b.forward(x).unwrap();
        assert_eq!(ya.into_data(), yb.into_data());

        let other = checked(
            "net O(input = [3, 16, 16], classes = 7) { conv(3 -> 4, k = 3); gap; linear(4 -> 7); }",
        );
        let o = RuntimeNet::<Flex>::new(&other, &device);
        let e = o.load_params_from(&a).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot load parameters: the source has")
        );
    }
}
