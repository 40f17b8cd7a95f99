use burn::tensor::Tensor;
use nas_macros::network;

network! {
    pub net Small(input = [3, 8, 8], classes = 10) {
        conv(3 -> 8, k = 3, pad = 1);
        gap;
        linear(8 -> 10);
    }

    pub net Wide(input = [3, 8, 8], classes = 5) {
        conv(3 -> 32, k = 3, pad = 1);
        relu;
        gap;
        linear(32 -> 5);
    }

    pub net Mlp(input = [12], classes = 3) {
        linear(12 -> 3);
    }
}

fn main() {
    type B = burn::backend::Flex;
    let device = Default::default();
    let x = Tensor::<B, 4>::zeros([2, 3, 8, 8], &device);
    assert_eq!(Small::<B>::init(&device).forward(x.clone()).dims(), [2, 10]);
    assert_eq!(Wide::<B>::init(&device).forward(x).dims(), [2, 5]);
    let v = Tensor::<B, 2>::zeros([2, 12], &device);
    assert_eq!(Mlp::<B>::init(&device).forward(v).dims(), [2, 3]);
    assert_eq!(
        (Small::<B>::CLASSES, Wide::<B>::CLASSES, Mlp::<B>::CLASSES),
        (10, 5, 3)
    );
    assert_eq!(Mlp::<B>::INPUT, &[12]);
}
