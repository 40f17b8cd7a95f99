use nas_macros::network;

network! {
    pub net Net(input = [16], classes = 10) {
        linear(16 -> 10);
    }

    pub net NetRecordItem(input = [16], classes = 10) {
        linear(16 -> 10);
    }
}

fn main() {}
