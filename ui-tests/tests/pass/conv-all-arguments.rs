use burn::module::Module;
use burn::tensor::Tensor;
use nas_macros::network;

network! {
    pub net Net(input = [4, 16, 16], classes = 10) {
        conv(4 -> 8, k = 3, stride = 2, pad = 2, groups = 2, dilation = 2, bias = false);
        conv(8 -> 8, k = 1);
        gap;
        linear(8 -> 10);
    }
}

fn main() {
    type B = burn::backend::Flex;
    let device = Default::default();
    let m = Net::<B>::init(&device);
    let x = Tensor::<B, 4>::zeros([2, 4, 16, 16], &device);
    assert_eq!(m.forward(x).dims(), [2, 10]);
    // No bias on the first conv, grouped weights: Burn's count agrees with the checker's.
    assert!(m.conv0.bias.is_none());
    assert_eq!(m.num_params() as u64, Net::<B>::PARAMS);
}
