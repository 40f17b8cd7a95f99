net Bad(input = [3, 8, 8], classes = 10) {
    stem: conv(3 -> 16, k = 3);
    stem: conv(16 -> 16, k = 3);
    gap;
    linear(16 -> 10);
}
