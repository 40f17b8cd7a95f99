use nas_macros::network;

network! {
    pub net Net(input = [64], classes = 10) {
        conv(64 -> 10, k = 1);
    }
}

fn main() {}
