use nas_macros::network;

network! {
    pub struct Net(input = [16], classes = 10) {
        linear(16 -> 10);
    }
}

fn main() {}
