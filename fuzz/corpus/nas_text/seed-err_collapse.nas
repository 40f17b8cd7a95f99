net Bad(input = [3, 8, 8], classes = 10) {
    conv(3 -> 16, k = 3, stride = 2);
    conv(16 -> 16, k = 3);
    conv(16 -> 16, k = 3);
    gap;
    linear(16 -> 10);
}
