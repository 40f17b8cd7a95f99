/// A plain small CNN for fast CPU search (the default seed of `evolve`):
/// three 3x3 conv + BatchNorm + ReLU stages of widths 16, 32, 64; the first
/// convolution has stride 2 and a 2x2 max-pool follows each of the first two
/// stages (32 -> 16 -> 8 -> 4), then global average pooling and a linear
/// head (24,458 parameters, 0.70 M multiply-accumulates per image).
pub net SmallCnn(input = [3, 32, 32], classes = 10) {
    conv1: conv(3 -> 16, k = 3, stride = 2, pad = 1);
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
