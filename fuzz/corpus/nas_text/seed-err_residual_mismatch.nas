net Bad(input = [32, 32, 32], classes = 10) {
    residual {
        conv(32 -> 64, k = 3, stride = 2, pad = 1);
    } shortcut {
        conv(32 -> 64, k = 1);
    }
    gap;
    linear(64 -> 10);
}
