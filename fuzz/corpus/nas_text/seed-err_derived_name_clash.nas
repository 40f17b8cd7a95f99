// Lowered to Rust, `Net` derives a `NetRecord` type: a second net cannot take that name.
net NetRecord(input = [16], classes = 10) {
    linear(16 -> 10);
}

net Net(input = [16], classes = 10) {
    linear(16 -> 10);
}
