use burn::module::Module;
use burn::tensor::Tensor;
use nas_macros::network;

network! {
    pub net Net(input = [2, 4, 4], classes = 10) {
        flatten;
        linear(32 -> 16);
        relu;
        linear(16 -> 10, bias = false);
    }
}

fn main() {
    type B = burn::backend::Flex;
    let device = Default::default();
    let m = Net::<B>::init(&device);
    let x = Tensor::<B, 4>::zeros([3, 2, 4, 4], &device);
    assert_eq!(m.forward(x).dims(), [3, 10]);
    assert!(m.linear3.bias.is_none());
    assert_eq!(m.num_params() as u64, Net::<B>::PARAMS);
}
