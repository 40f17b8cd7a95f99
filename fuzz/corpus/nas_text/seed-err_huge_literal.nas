net Bad(input = [3, 8, 8], classes = 10) {
    conv(3 -> 99999999999999999999999, k = 3);
}
