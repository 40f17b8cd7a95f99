use nas_macros::network;

network! {
    pub net Net(input = [3, 8, 8], classes = 16) {
        conv(3 -> 16, k = 0);
        gap;
    }
}

fn main() {}
