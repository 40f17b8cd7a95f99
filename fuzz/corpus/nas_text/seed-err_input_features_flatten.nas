net Bad(input = [3, 32, 32], classes = 10) {
    conv(3 -> 256, k = 3, stride = 2);
    maxpool(k = 5);
    flatten;
    dropout(p = 0.5);
    head: linear(4096 -> 10);
}
