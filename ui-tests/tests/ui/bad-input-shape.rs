use nas_macros::network;

network! {
    pub net Net(input = [3, 8], classes = 10) {
        flatten;
        linear(24 -> 10);
    }
}

fn main() {}
