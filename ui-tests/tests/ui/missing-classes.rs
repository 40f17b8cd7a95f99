use nas_macros::network;

network! {
    pub net Net(input = [16]) {
        linear(16 -> 10);
    }
}

fn main() {}
