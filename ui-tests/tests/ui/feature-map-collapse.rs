use nas_macros::network;

network! {
    pub net Net(input = [3, 8, 8], classes = 10) {
        conv(3 -> 16, k = 3, stride = 2, pad = 1);
        maxpool(k = 2);
        conv(16 -> 32, k = 3);
        gap;
        linear(32 -> 10);
    }
}

fn main() {}
