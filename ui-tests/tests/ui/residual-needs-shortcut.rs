use nas_macros::network;

network! {
    pub net Net(input = [32, 32, 32], classes = 10) {
        residual {
            conv(32 -> 64, k = 3, stride = 2, pad = 1);
            bn;
            relu;
        }
        gap;
        linear(64 -> 10);
    }
}

fn main() {}
