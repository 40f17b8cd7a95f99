use burn::tensor::Tensor;
use nas_macros::network;

network! {
    pub net Net(input = [3, 8, 8], classes = 10) {
        conv(3 -> 16, k = 3);
        dropout(p = 0.25);
        gap;
        dropout(p = 0);
        linear(16 -> 10);
    }
}

fn main() {
    type B = burn::backend::Flex;
    let device = Default::default();
    let m = Net::<B>::init(&device);
    let x = Tensor::<B, 4>::zeros([2, 3, 8, 8], &device);
    assert_eq!(m.forward(x).dims(), [2, 10]);
}
