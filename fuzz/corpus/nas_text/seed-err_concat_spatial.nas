net Bad(input = [16, 16, 16], classes = 10) {
    concat {
        branch { conv(16 -> 32, k = 1); }
        branch { conv(16 -> 48, k = 2); }
    }
    gap;
    linear(80 -> 10);
}
