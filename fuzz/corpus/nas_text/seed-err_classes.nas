net Bad(input = [3, 8, 8], classes = 100) {
    conv(3 -> 64, k = 3);
    gap;
}
