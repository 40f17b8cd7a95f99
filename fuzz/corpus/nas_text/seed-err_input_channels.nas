net Bad(input = [3, 32, 32], classes = 10) {
    stem: conv(3 -> 32, k = 3, pad = 1);
    bn;
    relu;
    conv(64 -> 64, k = 3, pad = 1);
    gap;
    linear(64 -> 10);
}
