//! A documented net: the `///` lines become the struct's docs.

use burn::tensor::Tensor;
use nas_macros::network;

network! {
    /// A small documented network.
    ///
    /// Its doc comment is kept on the generated module.
    pub net Net(input = [3, 8, 8], classes = 10) {
        // Plain comments are discarded.
        conv(3 -> 8, k = 3, pad = 1); // trailing comment
        gap;
        linear(8 -> 10);
    }
}

fn main() {
    type B = burn::backend::Flex;
    let device = Default::default();
    let m = Net::<B>::init(&device);
    let x = Tensor::<B, 4>::zeros([2, 3, 8, 8], &device);
    assert_eq!(m.forward(x).dims(), [2, 10]);
}
