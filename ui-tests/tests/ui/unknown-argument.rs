use nas_macros::network;

network! {
    pub net Net(input = [3, 8, 8], classes = 16) {
        conv(3 -> 16, kernel = 3);
        gap;
    }
}

fn main() {}
