use burn::module::Module;
use burn::tensor::Tensor;
use nas_macros::network;

network! {
    pub net Net(input = [20], classes = 4) {
        bn;
        linear(20 -> 16);
        gelu;
        dropout(p = 0.5);
        linear(16 -> 4);
    }
}

fn main() {
    type B = burn::backend::Flex;
    let device = Default::default();
    let m = Net::<B>::init(&device);
    let x = Tensor::<B, 2>::zeros([2, 20], &device);
    assert_eq!(m.forward(x).dims(), [2, 4]);
    assert_eq!(Net::<B>::INPUT, &[20]);
    // Burn also counts the batch norm's running mean and variance.
    assert_eq!(m.num_params() as u64, Net::<B>::PARAMS + 2 * 20);
}
