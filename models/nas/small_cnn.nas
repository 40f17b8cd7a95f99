/// A plain small CNN for fast CPU search on CIFAR-10: three 3x3 conv +
/// BatchNorm + ReLU stages of widths 16, 32, 64 with two 2x2 max-pools
/// between them, global average pooling and a linear head (24,458
/// parameters).
pub net SmallCnn(input = [3, 32, 32], classes = 10) {
    conv1: conv(3 -> 16, k = 3, pad = 1);
    bn;
    relu;
    maxpool(k = 2);
    conv2: conv(16 -> 32, k = 3, pad = 1);
    bn;
    relu;
    maxpool(k = 2);
    conv3: conv(32 -> 64, k = 3, pad = 1);
    bn;
    relu;
    gap;
    head: linear(64 -> 10);
}
