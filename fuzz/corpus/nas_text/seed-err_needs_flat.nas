net Bad(input = [3, 8, 8], classes = 10) {
    conv(3 -> 64, k = 1);
    linear(64 -> 10);
}
