use nas_macros::network;

network! {
    pub net Net(input = [32, 16, 16], classes = 10) {
        residual {
            conv(32 -> 64, k = 3, stride = 2, pad = 1);
        } shortcut {
            conv(32 -> 64, k = 1);
        }
        gap;
        linear(64 -> 10);
    }
}

fn main() {}
