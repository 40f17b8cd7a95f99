use nas_macros::network;

network! {
    pub net Net(input = [16], classes = 10) {
        dropout(p = 1.5);
        linear(16 -> 10);
    }
}

fn main() {}
