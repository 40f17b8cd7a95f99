//! Macro versus runtime builder, for every model of the `models` crate: the
//! `network!` module and the module `nas-core` builds at run time from the same
//! canonical text have the same parameter count, and with the same weights (the
//! macro module's, randomised, loaded into the runtime one) the same logits within
//! 1e-5 — in inference mode and in training mode (batch statistics, dropout masks
//! from the same backend seed).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

use burn::backend::{Autodiff, Flex};
use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, ElementConversion, Tensor};
use nas_core::runtime::RuntimeNet;

/// Replaces every rank-1 parameter (biases, BatchNorm scale, shift and running
/// statistics) with values in [0.5, 1.5], so no layer is an identity at init.
struct Perturb;

impl<B: Backend> ModuleMapper<B> for Perturb {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        if D == 1 {
            param.map(|t| t.random_like(Distribution::Uniform(0.5, 1.5)))
        } else {
            param
        }
    }
}

fn max_diff<B: Backend>(a: Tensor<B, 2>, b: Tensor<B, 2>) -> f32 {
    a.sub(b).abs().max().into_scalar().elem()
}

/// Checks one model on backend `B`; returns its name.
macro_rules! check_model {
    ($model:ident, $seed:expr) => {{
        type M<B> = models::$model<B>;
        let name = stringify!($model);
        let checked = nas_dsl::check_str(M::<Flex>::SOURCE)
            .unwrap_or_else(|e| panic!("{name}: {e:?}"))
            .remove(0);
        assert_eq!(checked.name(), name);
        assert_eq!(M::<Flex>::PARAMS, checked.params(), "{name}: PARAMS");

        // Inference mode.
        let device = Default::default();
        Flex::seed(&device, $seed);
        let mac = M::<Flex>::init(&device).map(&mut Perturb);
        let fresh = RuntimeNet::<Flex>::new(&checked, &device);
        assert_eq!(mac.num_params(), fresh.num_params(), "{name}: num_params");
        assert_eq!(
            fresh.num_params() as u64,
            checked.burn_params(),
            "{name}: burn_params"
        );
        let run = fresh.load_params_from(&mac).unwrap();
        let x = Tensor::<Flex, 4>::random([3, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
        let (a, b) = (mac.forward(x.clone()), run.forward(x).unwrap());
        assert_eq!(a.dims(), b.dims(), "{name}: logits shape");
        let d = max_diff(a.clone(), b);
        assert!(d <= 1e-5, "{name}: inference logits differ by {d}");
        let spread = max_diff(a.clone(), a.zeros_like());
        assert!(
            spread > 1e-3,
            "{name}: logits are all ~0, the test proves nothing"
        );

        // Training mode: BatchNorm uses batch statistics, dropout draws masks.
        type A = Autodiff<Flex>;
        let mac = M::<A>::init(&device).map(&mut Perturb);
        let run = RuntimeNet::<A>::new(&checked, &device)
            .load_params_from(&mac)
            .unwrap();
        let x = Tensor::<A, 4>::random([4, 3, 32, 32], Distribution::Normal(0.0, 1.0), &device);
        A::seed(&device, 99);
        let a = mac.forward(x.clone());
        A::seed(&device, 99);
        let b = run.forward(x).unwrap();
        let d = max_diff(a, b);
        assert!(d <= 1e-5, "{name}: training-mode logits differ by {d}");
        name
    }};
}

#[test]
fn macro_and_runtime_modules_agree_for_every_model() {
    let checked = [
        check_model!(TinyResNet, 1),
        check_model!(AlexNetCifar, 2),
        check_model!(VggCifar, 3),
        check_model!(MobileNetCifar, 4),
        check_model!(SmallCnn, 5),
    ];
    let mut all: Vec<&str> = models::all_sources().iter().map(|(n, _)| *n).collect();
    all.sort_unstable();
    let mut done = checked.to_vec();
    done.sort_unstable();
    assert_eq!(
        done, all,
        "every model in `models::all_sources()` needs a line above"
    );
}
