use nas_macros::network;

network! {
    pub net Net(input = [16, 8, 8], classes = 10) {
        concat {
            branch { conv(16 -> 8, k = 1); }
            branch { gap; }
        }
        gap;
        linear(24 -> 10);
    }
}

fn main() {}
