net Bad(input = [3, 8, 8], classes = 10) {
    conv(3 -> 16, kernel = 3);
    gap;
    linear(16 -> 10);
}
