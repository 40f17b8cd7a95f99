// Two independent mistakes: a conv whose written input width is wrong, and a
// linear that receives a feature map.
net TwoErrors(input = [3, 16, 16], classes = 10) {
    stem: conv(3 -> 16, k = 3, pad = 1);
    relu;
    second: conv(32 -> 16, k = 3, pad = 1);
    relu;
    head: linear(16 -> 10);
}
