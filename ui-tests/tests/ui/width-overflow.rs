use nas_macros::network;

network! {
    pub net Net(input = [3, 8, 8], classes = 10) {
        conv(3 -> 18446744073709551615, k = 3, pad = 1);
        gap;
        linear(18446744073709551615 -> 10);
    }
}

fn main() {}
