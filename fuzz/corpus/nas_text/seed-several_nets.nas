/// First of two nets in one file.
pub net First(input = [1, 8, 8], classes = 2) {
    conv(1 -> 4, k = 3);
    relu;
    gap;
    linear(4 -> 2);
}

net Second(input = [4], classes = 4) {
    linear(4 -> 4);
}
