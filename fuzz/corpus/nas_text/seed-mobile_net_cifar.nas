/// A MobileNet-style CNN for CIFAR-10: a 3x3 stem, then depthwise-separable
/// blocks (a depthwise 3x3 conv with `groups` equal to its channels, then a
/// pointwise 1x1 conv, each followed by BatchNorm and ReLU), downsampling
/// twice with stride-2 depthwise convs (32 -> 16 -> 8), global average
/// pooling and a linear head.
pub net MobileNetCifar(input = [3, 32, 32], classes = 10) {
    stem: conv(3 -> 32, k = 3, pad = 1, bias = false);
    bn;
    relu;
    dw1: conv(32 -> 32, k = 3, pad = 1, groups = 32, bias = false);
    bn;
    relu;
    pw1: conv(32 -> 64, k = 1, bias = false);
    bn;
    relu;
    dw2: conv(64 -> 64, k = 3, stride = 2, pad = 1, groups = 64, bias = false);
    bn;
    relu;
    pw2: conv(64 -> 128, k = 1, bias = false);
    bn;
    relu;
    dw3: conv(128 -> 128, k = 3, pad = 1, groups = 128, bias = false);
    bn;
    relu;
    pw3: conv(128 -> 128, k = 1, bias = false);
    bn;
    relu;
    dw4: conv(128 -> 128, k = 3, stride = 2, pad = 1, groups = 128, bias = false);
    bn;
    relu;
    pw4: conv(128 -> 256, k = 1, bias = false);
    bn;
    relu;
    dw5: conv(256 -> 256, k = 3, pad = 1, groups = 256, bias = false);
    bn;
    relu;
    pw5: conv(256 -> 256, k = 1, bias = false);
    bn;
    relu;
    gap;
    head: linear(256 -> 10);
}
