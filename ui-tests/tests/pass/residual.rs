use burn::tensor::Tensor;
use nas_macros::network;

network! {
    pub net Net(input = [3, 16, 16], classes = 10) {
        conv(3 -> 8, k = 3, pad = 1);
        residual {
            conv(8 -> 8, k = 3, pad = 1);
            bn;
            relu;
            conv(8 -> 8, k = 3, pad = 1);
        }
        relu;
        residual {
            conv(8 -> 16, k = 3, stride = 2, pad = 1);
            bn;
        } shortcut {
            conv(8 -> 16, k = 1, stride = 2);
        }
        gap;
        linear(16 -> 10);
    }
}

fn main() {
    type B = burn::backend::Flex;
    let device = Default::default();
    let m = Net::<B>::init(&device);
    let x = Tensor::<B, 4>::zeros([2, 3, 16, 16], &device);
    assert_eq!(m.forward(x).dims(), [2, 10]);
}
