net Bad(input = [64], classes = 10) {
    conv(64 -> 10, k = 1);
    maxpool(k = 2);
    gap;
}
