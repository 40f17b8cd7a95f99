use burn::module::Module;
use burn::tensor::Tensor;
use nas_macros::network;

network! {
    pub net Net(input = [3, 16, 16], classes = 10) {
        conv(3 -> 8, k = 3, pad = 1);
        maxpool(k = 3, stride = 2, pad = 1);
        avgpool(k = 2);
        maxpool(k = 2, stride = 1);
        avgpool(k = 3, stride = 1, pad = 1);
        // [8, 3, 3] here.
        flatten;
        linear(72 -> 10);
    }
}

fn main() {
    type B = burn::backend::Flex;
    let device = Default::default();
    let m = Net::<B>::init(&device);
    let x = Tensor::<B, 4>::zeros([2, 3, 16, 16], &device);
    assert_eq!(m.forward(x).dims(), [2, 10]);
    assert_eq!(m.num_params() as u64, Net::<B>::PARAMS);
}
