net Messy(input = [3, 8, 8], classes = 10) {
    conv(3 -> 8, k = 3, pad = 1);
    bn;
    relu;
    pool: maxpool(k = 2);
    gap;
    dropout(p = 0.5);
    head: linear(8 -> 10);
}
