net Bad(input = [3, 8, 8], classes = 10) {
    conv(3 -> 0, k = 0, bias = 1);
    dropout(p = 1.5);
    bn(4 -> 4);
    relu(x = 1);
}
