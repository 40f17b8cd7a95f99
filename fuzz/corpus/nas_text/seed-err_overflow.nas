net Bad(input = [3, 8, 8], classes = 10) {
    conv(3 -> 18446744073709551615, k = 3);
    flatten;
    linear(18446744073709551615 -> 10);
}
