use nas_macros::network;

network! {
    /// Argument mistakes: every one is reported, not only the first.
    pub net Broken(input = [3, 8, 8], classes = 10) {
        conv3d(3 -> 16, k = 3);
        conv(3 -> 16, kernel = 3);
        dropout(p = 1.5);
        gap;
        linear(16 -> 10);
    }

    /// Shape mistakes in independent places of one net.
    pub net Mismatched(input = [3, 8, 8], classes = 100) {
        stem: conv(3 -> 32, k = 3, pad = 1);
        conv(64 -> 64, k = 3, pad = 1);
        residual {
            conv(64 -> 128, k = 3, stride = 2, pad = 1);
        }
        gap;
        linear(128 -> 10);
    }

    /// A valid net beside the broken ones still expands.
    net Fine(input = [16], classes = 10) {
        linear(16 -> 10);
    }
}

// The stubs keep these uses compiling: no "cannot find type" follows the errors.
fn build<B: burn::tensor::backend::Backend>(device: &B::Device) {
    let _broken = Broken::<B>::init(device);
    let _mismatched = Mismatched::<B>::init(device);
    let fine = Fine::<B>::init(device);
    let _logits = fine.forward(burn::tensor::Tensor::zeros([2, 16], device));
}

fn main() {
    build::<burn::backend::Flex>(&Default::default());
}
