use burn::tensor::Tensor;
use nas_macros::network;

mod nets {
    use super::network;

    network! {
        net Hidden(input = [3, 8, 8], classes = 10) {
            conv(3 -> 8, k = 3, pad = 1);
            gap;
            linear(8 -> 10);
        }
    }

    /// Built inside the module: `Hidden` is not visible outside it.
    pub fn logits_dims() -> [usize; 2] {
        type B = burn::backend::Flex;
        let device = Default::default();
        let m = Hidden::<B>::init(&device);
        let x = super::Tensor::<B, 4>::zeros([2, 3, 8, 8], &device);
        m.forward(x).dims()
    }
}

fn main() {
    assert_eq!(nets::logits_dims(), [2, 10]);
}
