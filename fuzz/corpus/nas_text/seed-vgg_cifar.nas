/// A VGG-style CNN for CIFAR-10: three stages of two 3x3 conv + BatchNorm +
/// ReLU (widths 32, 64, 128; bias-free convs since BatchNorm follows), each
/// ending in a 2x2 max-pool, then global average pooling and a linear head.
pub net VggCifar(input = [3, 32, 32], classes = 10) {
    conv1_1: conv(3 -> 32, k = 3, pad = 1, bias = false);
    bn;
    relu;
    conv1_2: conv(32 -> 32, k = 3, pad = 1, bias = false);
    bn;
    relu;
    maxpool(k = 2);
    conv2_1: conv(32 -> 64, k = 3, pad = 1, bias = false);
    bn;
    relu;
    conv2_2: conv(64 -> 64, k = 3, pad = 1, bias = false);
    bn;
    relu;
    maxpool(k = 2);
    conv3_1: conv(64 -> 128, k = 3, pad = 1, bias = false);
    bn;
    relu;
    conv3_2: conv(128 -> 128, k = 3, pad = 1, bias = false);
    bn;
    relu;
    maxpool(k = 2);
    gap;
    dropout(p = 0.3);
    head: linear(128 -> 10);
}
