//! Batch normalisation with the arithmetic of Burn's `BatchNorm::forward`, written
//! for the CPU backend's fast paths.
//!
//! Burn's own forward swaps the batch and channel axes and broadcasts `[1, C, 1, 1]`
//! statistics over `[N, C, H, W]` maps; the flex backend walks both with a scalar
//! strided iterator, forward and backward, which made batch normalisation about 45 %
//! of a training step of the default seed. Here every full-size operation is either
//! element-wise on contiguous tensors or broadcasts one value per (sample, channel)
//! row of a `[N, C, H·W]` view, which flex runs as a vectorised loop, and the
//! per-channel statistics are reduced along contiguous rows. The module (its
//! parameters, running statistics and record) stays Burn's [`BatchNorm`], so the
//! runtime net keeps the parameters of the `network!` macro's module.

use burn::nn::BatchNorm;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// `m.forward(x)` for `x` of shape `[N, C, …]`: batch statistics (and a running
/// statistics update) when the backend records gradients, the running statistics
/// otherwise.
pub fn forward<B: Backend, const D: usize>(m: &BatchNorm<B>, x: Tensor<B, D>) -> Tensor<B, D> {
    let dims = x.dims();
    let (n, c) = (dims[0], dims[1]);
    let rest = dims[2..].iter().product::<usize>();
    let x = x.reshape([n, c, rest]);
    // A `[C]` vector as one value per (sample, channel) row, materialised so the
    // broadcast over `H·W` is the backend's per-row pattern.
    let rows = |t: Tensor<B, 3>| t.repeat_dim(0, n);
    let gamma = m.gamma.val().reshape([1, c, 1]);
    let beta = m.beta.val().reshape([1, c, 1]);
    let y = if B::ad_enabled(&x.device()) {
        let mean = x.clone().mean_dim(2).mean_dim(0);
        let centred = x - rows(mean.clone());
        let var = centred.clone().square().mean_dim(2).mean_dim(0);
        update(
            m,
            mean.detach().reshape([c]),
            var.clone().detach().reshape([c]),
        );
        let scale = gamma / var.add_scalar(m.epsilon).sqrt();
        centred * rows(scale) + rows(beta)
    } else {
        let device = x.device();
        let mean = m.running_mean.value().to_device(&device).reshape([1, c, 1]);
        let var = m.running_var.value().to_device(&device).reshape([1, c, 1]);
        let scale = gamma / var.add_scalar(m.epsilon).sqrt();
        let shift = beta - mean * scale.clone();
        x * rows(scale) + rows(shift)
    };
    y.reshape(dims)
}

/// The running statistics' exponential average, as Burn's `forward_train` updates it
/// (with the biased batch variance).
fn update<B: Backend>(m: &BatchNorm<B>, mean: Tensor<B, 1>, var: Tensor<B, 1>) {
    let device = mean.device();
    let blend = |old: Tensor<B, 1>, new: Tensor<B, 1>| {
        old.to_device(&device)
            .mul_scalar(1.0 - m.momentum)
            .add(new.mul_scalar(m.momentum))
            .detach()
    };
    m.running_mean
        .update(blend(m.running_mean.value_sync(), mean));
    m.running_var.update(blend(m.running_var.value_sync(), var));
}

#[cfg(test)]
mod tests {
    use super::forward;
    use burn::backend::{Autodiff, Flex};
    use burn::module::AutodiffModule;
    use burn::nn::{BatchNorm, BatchNormConfig};
    use burn::tensor::{Distribution, Tensor, Tolerance};

    type Ad = Autodiff<Flex>;

    fn close<const D: usize>(a: Tensor<Flex, D>, b: Tensor<Flex, D>) {
        a.into_data()
            .assert_approx_eq::<f32>(&b.into_data(), Tolerance::absolute(2e-5));
    }

    /// A module with non-trivial affine parameters and running statistics.
    fn module(c: usize) -> BatchNorm<Ad> {
        let device = Default::default();
        let mut m = BatchNormConfig::new(c).init::<Ad>(&device);
        m.gamma = m
            .gamma
            .map(|_| Tensor::random([c], Distribution::Uniform(0.5, 1.5), &device).require_grad());
        m.beta = m
            .beta
            .map(|_| Tensor::random([c], Distribution::Normal(0.0, 0.5), &device).require_grad());
        m
    }

    #[test]
    fn training_matches_burns_outputs_gradients_and_running_statistics() {
        let device = Default::default();
        for dims in [[4, 3, 5, 6], [2, 7, 1, 1], [1, 2, 3, 3]] {
            let ours = module(dims[1]);
            let burns = ours.clone();
            let input = Tensor::<Ad, 4>::random(dims, Distribution::Normal(1.5, 2.0), &device);
            let weight = Tensor::<Ad, 4>::random(dims, Distribution::Default, &device);
            let (x1, x2) = (input.clone().require_grad(), input.require_grad());
            let y1 = forward(&ours, x1.clone());
            let y2 = burns.forward(x2.clone());
            close(y1.clone().inner(), y2.clone().inner());
            let g1 = (y1 * weight.clone()).sum().backward();
            let g2 = (y2 * weight).sum().backward();
            close(x1.grad(&g1).unwrap(), x2.grad(&g2).unwrap());
            close(
                ours.gamma.val().grad(&g1).unwrap(),
                burns.gamma.val().grad(&g2).unwrap(),
            );
            close(
                ours.beta.val().grad(&g1).unwrap(),
                burns.beta.val().grad(&g2).unwrap(),
            );
            close(
                ours.running_mean.value().inner(),
                burns.running_mean.value().inner(),
            );
            close(
                ours.running_var.value().inner(),
                burns.running_var.value().inner(),
            );
        }
    }

    #[test]
    fn inference_matches_burns_on_maps_and_flat_values() {
        let device = Default::default();
        let trained = module(5);
        // Move the running statistics away from their initial values.
        for _ in 0..3 {
            let x = Tensor::<Ad, 4>::random([3, 5, 4, 4], Distribution::Normal(-1.0, 3.0), &device);
            forward(&trained, x);
        }
        let m = trained.valid();
        let map = Tensor::<Flex, 4>::random([2, 5, 3, 3], Distribution::Default, &device);
        close(forward(&m, map.clone()), m.forward(map));
        let flat = Tensor::<Flex, 2>::random([6, 5], Distribution::Default, &device);
        close(forward(&m, flat.clone()), m.forward(flat));
    }
}
