use nas_macros::network;

network! {
    pub net Net(input = [32, 8, 8], classes = 64) {
        conv(32 -> 64, k = 3, pad = 1, groups = 3);
        gap;
    }
}

fn main() {}
