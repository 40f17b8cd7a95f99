net Bad(input = [32, 8, 8], classes = 10) {
    conv(32 -> 64, k = 3, pad = 1, groups = 3);
    gap;
    linear(64 -> 10);
}
