net Bad(input = [3, 8, 8], classes = 3) {
    maxpool(k = 2, pad = 2);
    gap;
}
