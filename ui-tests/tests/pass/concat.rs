use burn::module::Module;
use burn::tensor::Tensor;
use nas_macros::network;

network! {
    pub net Net(input = [3, 8, 8], classes = 10) {
        concat {
            branch { conv(3 -> 4, k = 1); }
            branch { conv(3 -> 6, k = 3, pad = 1); relu; }
            branch { maxpool(k = 3, stride = 1, pad = 1); }
        }
        // 4 + 6 + 3 channels.
        conv(13 -> 10, k = 1);
        gap;
    }
}

fn main() {
    type B = burn::backend::Flex;
    let device = Default::default();
    let m = Net::<B>::init(&device);
    let x = Tensor::<B, 4>::zeros([2, 3, 8, 8], &device);
    assert_eq!(m.forward(x).dims(), [2, 10]);
    assert_eq!(m.num_params() as u64, Net::<B>::PARAMS);
}
