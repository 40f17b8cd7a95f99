net Bad(input = [3, 8, 8], classes = 10) {
    conv(3 -> 16, k = 3;
    gap;
}
