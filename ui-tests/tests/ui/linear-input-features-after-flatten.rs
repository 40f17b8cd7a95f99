use nas_macros::network;

network! {
    pub net Net(input = [3, 6, 6], classes = 10) {
        conv(3 -> 256, k = 3, pad = 1);
        maxpool(k = 2);
        flatten;
        head: linear(4096 -> 10);
    }
}

fn main() {}
