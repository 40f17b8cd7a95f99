use nas_macros::network;

network! {
    pub net Net(input = [3, 8, 8], classes = 10) {
        stem: conv(3 -> 16, k = 3, pad = 1);
        relu;
        stem: conv(16 -> 16, k = 3, pad = 1);
        gap;
        linear(16 -> 10);
    }
}

fn main() {}
