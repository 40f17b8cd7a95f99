use nas_macros::network;

network! {
    pub net Net(input = [16, 8, 8], classes = 16) {
        concat {}
        gap;
    }
}

fn main() {}
