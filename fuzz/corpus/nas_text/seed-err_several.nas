net First(input = [3, 32, 32], classes = 10) {
    stem: conv(3 -> 32, k = 3, pad = 1);
    conv(64 -> 64, k = 3, pad = 1);
    conv(64 -> 64, k = 3, groups = 5);
    residual { conv(64 -> 128, k = 3); }
    gap;
    linear(128 -> 100);
}

net Second(input = [10], classes = 10) {
    linear(10 -> 10);
    conv(10 -> 10, k = 1);
}
