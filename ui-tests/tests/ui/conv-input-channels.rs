use nas_macros::network;

network! {
    pub net Net(input = [3, 8, 8], classes = 10) {
        stem: conv(3 -> 32, k = 3, pad = 1);
        relu;
        conv(64 -> 64, k = 3, pad = 1);
        gap;
        linear(64 -> 10);
    }
}

fn main() {}
